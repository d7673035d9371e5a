"""Turning a template and an appointment's wording data into the message we send: which template applies
(the business's own for the locale, its language, else the built-in default), the variables, the invite."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from .channels.base import Attachment
from .channels.calendar import calendar_invite, invite_attachment
from .channels.rendering import Rendered, render
from .channels.rendering import default_template as default_template

KINDS = ("reminder", "confirmation")
CHANNELS = ("email", "sms")
FALLBACK_LOCALE = "en"

# What PreviewTemplate renders with unless the request overrides it.
SAMPLE_DATA: dict[str, str] = {
    "business_name": "Hair by Ana",
    "service_name": "Haircut",
    "staff_name": "Sam",
    "customer_name": "Alex Example",
    "business_time_zone": "Europe/Berlin",
    "customer_time_zone": "Europe/Berlin",
    "locale": "en",
    "appointment_id": "00000000-0000-0000-0000-000000000000",
    "manage_token": "sample-token",
    "quiet_hours_start": "",
    "quiet_hours_end": "",
}
SAMPLE_START = dt.datetime(2030, 12, 3, 13, 30, tzinfo=dt.UTC)
SAMPLE_DURATION = dt.timedelta(minutes=30)


def locales_for(locale: str) -> list[str]:
    """The locales to try, most specific first: "de-AT" -> ["de-AT", "de", "en"]."""
    out = [locale] if locale else []
    language = locale.partition("-")[0]
    if language and language not in out:
        out.append(language)
    if FALLBACK_LOCALE not in out:
        out.append(FALLBACK_LOCALE)
    return out


def time_zone_of(data: Mapping[str, str]) -> str:
    """The customer's zone when known (the message is for them), else the business's."""
    return data.get("customer_time_zone") or data.get("business_time_zone") or "UTC"


def parse_time(data: Mapping[str, str], key: str) -> dt.datetime | None:
    raw = data.get(key, "")
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def render_with(
    subject: str, body: str, data: Mapping[str, str], start: dt.datetime, end: dt.datetime, *, html: bool
) -> Rendered:
    return render(
        subject,
        body,
        data,
        locale=data.get("locale") or FALLBACK_LOCALE,
        time_zone=time_zone_of(data),
        start=start,
        end=end,
        html=html,
    )


def invite(
    appointment_id: str,
    start: dt.datetime,
    end: dt.datetime,
    data: Mapping[str, str],
    *,
    attendee: str,
    now: dt.datetime,
) -> Attachment:
    summary = data.get("service_name") or "Appointment"
    business = data.get("business_name", "")
    ics = calendar_invite(
        f"{appointment_id}@apptremind",
        start,
        end,
        f"{summary} - {business}" if business else summary,
        location=business,
        description=data.get("staff_name", ""),
        attendee_email=attendee,
        # A later message about the same appointment (a reschedule) must replace the event in the
        # customer's calendar, so the sequence only grows: seconds since the epoch do.
        sequence=int(now.timestamp()),
        dtstamp=now,
    )
    return invite_attachment(ics)
