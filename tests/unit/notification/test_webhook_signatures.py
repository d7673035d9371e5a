"""Twilio's request signature, checked against the vectors Twilio itself publishes."""

from __future__ import annotations

from apptremind_platform.webhook_signatures import twilio_signature, verify_twilio_signature

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
# The example of Twilio's webhook security documentation.
DOCS_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
# The vector of the request-validator unit tests in Twilio's Python helper library.
LIBRARY_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}


def test_documented_example() -> None:
    assert twilio_signature(TOKEN, URL, DOCS_PARAMS) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert verify_twilio_signature(TOKEN, URL, DOCS_PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")


def test_helper_library_vectors() -> None:
    assert twilio_signature(TOKEN, URL, LIBRARY_PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    # Signed with the explicit default port: a receiver that sees the URL without it still accepts it,
    # and the reverse.
    assert verify_twilio_signature(TOKEN, URL, LIBRARY_PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w=")
    with_port = URL.replace(".com", ".com:443")
    assert verify_twilio_signature(TOKEN, with_port, LIBRARY_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_parameter_order_does_not_matter() -> None:
    reversed_params = dict(reversed(list(DOCS_PARAMS.items())))
    assert twilio_signature(TOKEN, URL, reversed_params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_tampering_is_detected() -> None:
    good = twilio_signature(TOKEN, URL, DOCS_PARAMS)
    assert not verify_twilio_signature(TOKEN, URL, {**DOCS_PARAMS, "Digits": "9999"}, good)
    assert not verify_twilio_signature(TOKEN, URL + "&baz=3", DOCS_PARAMS, good)
    assert not verify_twilio_signature("54321", URL, DOCS_PARAMS, good)
    assert not verify_twilio_signature(TOKEN, URL, DOCS_PARAMS, "")
    assert not verify_twilio_signature(TOKEN, URL, DOCS_PARAMS, good[:-2] + "A=")


def test_empty_params_sign_the_url_alone() -> None:
    sig = twilio_signature(TOKEN, "http://127.0.0.1:9000/hook?delivery=d1", {})
    assert verify_twilio_signature(TOKEN, "http://127.0.0.1:9000/hook?delivery=d1", {}, sig)
