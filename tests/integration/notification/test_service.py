"""notification-service RPCs against the real service: templates (with preview and broken templates),
opt-outs, the delivery log, authorisation, tenancy and bad input (which changes nothing)."""

from __future__ import annotations

import uuid

import grpc

from apptremind_gen.apptremind.common.v1 import Channel, PageRequest
from apptremind_gen.apptremind.notification import v1 as pb
from tests.integration.notification.conftest import Notification
from tests.integration.notification.support import entitle, expect_error, job_of, reminder

REMINDER, CONFIRMATION = pb.TemplateKind.REMINDER, pb.TemplateKind.CONFIRMATION
EMAIL, SMS = Channel.EMAIL, Channel.SMS


def tenant(h: Notification, role: str = "owner") -> tuple[str, list[tuple[str, str]]]:
    """A business on the pro plan (it may write templates; plans themselves: test_entitlements.py)."""
    business_id = str(uuid.uuid4())
    entitle(h.db, business_id, "pro")
    return business_id, h.metadata(str(uuid.uuid4()), {business_id: role})


def count(h: Notification, table: str, business_id: str) -> int:
    [(n,)] = h.db.execute(f"SELECT count(*) FROM {table} WHERE business_id = %s", (business_id,))
    assert isinstance(n, int)
    return n


async def create(
    h: Notification,
    business_id: str,
    md: list[tuple[str, str]],
    *,
    kind: pb.TemplateKind = REMINDER,
    channel: Channel = EMAIL,
    locale: str = "de",
    subject: str = "Termin bei {{ business_name }}",
    body: str = "Hallo {{ customer_name }}, wir sehen uns am {{ when }}.",
) -> pb.Template:
    response = await h.client.call(
        "CreateTemplate",
        pb.CreateTemplateRequest(
            business_id=business_id, kind=kind, channel=channel, locale=locale, subject=subject, body=body
        ),
        pb.CreateTemplateResponse,
        metadata=md,
    )
    assert response.template is not None
    return response.template


async def test_templates_create_list_update_and_preview(harness: Notification) -> None:
    business_id, owner = tenant(harness)
    created = await create(harness, business_id, owner)
    sms = await create(
        harness, business_id, owner, channel=SMS, subject="", body="{{ service_name }} {{ time }}"
    )
    assert (created.kind, created.channel, created.locale) == (REMINDER, EMAIL, "de")

    listed = await harness.client.call(
        "ListTemplates",
        pb.ListTemplatesRequest(business_id=business_id),
        pb.ListTemplatesResponse,
        metadata=owner,
    )
    assert [t.template_id for t in listed.templates] == [created.template_id, sms.template_id]

    preview = await harness.client.call(
        "PreviewTemplate",
        pb.PreviewTemplateRequest(business_id=business_id, template_id=created.template_id),
        pb.PreviewTemplateResponse,
        metadata=owner,
    )
    assert preview.subject == "Termin bei Hair by Ana"
    # The sample appointment is Tuesday 2030-12-03 13:30 UTC, 14:30 in Berlin, worded in German.
    assert preview.text == "Hallo Alex Example, wir sehen uns am Dienstag, 3. Dezember 2030 um 14:30 MEZ."
    assert "<" in preview.html

    updated = await harness.client.call(
        "UpdateTemplate",
        pb.UpdateTemplateRequest(
            business_id=business_id, template_id=created.template_id, subject="Neu", body="Bis {{ date }}!"
        ),
        pb.UpdateTemplateResponse,
        metadata=owner,
    )
    assert updated.template is not None
    assert (updated.template.subject, updated.template.body) == ("Neu", "Bis {{ date }}!")

    inline = await harness.client.call(
        "PreviewTemplate",
        pb.PreviewTemplateRequest(
            business_id=business_id,
            kind=REMINDER,
            channel=SMS,
            locale="en",
            body="Hi {{ customer_name }}, {{ when }}",
            data={"customer_name": "Jo", "customer_time_zone": "America/New_York"},
        ),
        pb.PreviewTemplateResponse,
        metadata=owner,
    )
    assert inline.text == "Hi Jo, Tuesday, December 3, 2030 at 8:30 AM EST"
    assert inline.html == ""


async def test_a_broken_template_is_refused_and_nothing_is_written(harness: Notification) -> None:
    business_id, owner = tenant(harness)
    for body in ("{{ customer_name ", "{{ no_such_variable }}", "{{ ''.__class__.__mro__ }}"):
        await expect_error(
            create(harness, business_id, owner, body=body),
            grpc.StatusCode.INVALID_ARGUMENT,
            "template_invalid",
        )
    await expect_error(
        harness.client.call(
            "PreviewTemplate",
            pb.PreviewTemplateRequest(
                business_id=business_id,
                kind=REMINDER,
                channel=EMAIL,
                locale="en",
                subject="x",
                body="{% if %}",
            ),
            metadata=owner,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "template_invalid",
    )
    kept = await create(harness, business_id, owner)
    await expect_error(
        harness.client.call(
            "UpdateTemplate",
            pb.UpdateTemplateRequest(
                business_id=business_id, template_id=kept.template_id, subject="x", body="{{ nope }}"
            ),
            metadata=owner,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "template_invalid",
    )
    [(body,)] = harness.db.execute("SELECT body FROM template WHERE business_id = %s", (business_id,))
    assert body == kept.body


async def test_bad_template_input_is_refused_with_a_reason(harness: Notification) -> None:
    business_id, owner = tenant(harness)
    cases = [
        ({"kind": pb.TemplateKind.UNSPECIFIED}, "invalid_kind"),
        ({"channel": Channel.UNSPECIFIED}, "invalid_channel"),
        ({"locale": "german"}, "invalid_locale"),
        ({"subject": ""}, "missing_subject"),
        ({"channel": SMS}, "invalid_subject"),
        ({"body": "  "}, "missing_body"),
        ({"body": "x" * 20_001}, "template_too_long"),
    ]
    for change, reason in cases:
        await expect_error(
            create(harness, business_id, owner, **change),  # type: ignore[arg-type]
            grpc.StatusCode.INVALID_ARGUMENT,
            reason,
        )
    await create(harness, business_id, owner)
    await expect_error(create(harness, business_id, owner), grpc.StatusCode.ALREADY_EXISTS, "template_exists")
    assert count(harness, "template", business_id) == 1


async def test_members_read_managers_write_and_other_tenants_see_nothing(harness: Notification) -> None:
    business_id, owner = tenant(harness)
    staff = harness.metadata(str(uuid.uuid4()), {business_id: "staff"})
    other_id, other_owner = tenant(harness)
    template = await create(harness, business_id, owner)

    await expect_error(
        create(harness, business_id, staff), grpc.StatusCode.PERMISSION_DENIED, "insufficient_role"
    )
    listed = await harness.client.call(
        "ListTemplates",
        pb.ListTemplatesRequest(business_id=business_id),
        pb.ListTemplatesResponse,
        metadata=staff,
    )
    assert len(listed.templates) == 1
    await expect_error(
        harness.client.call(
            "ListTemplates", pb.ListTemplatesRequest(business_id=business_id), metadata=other_owner
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "not_a_member",
    )
    await expect_error(
        harness.client.call("ListTemplates", pb.ListTemplatesRequest(business_id=business_id)),
        grpc.StatusCode.UNAUTHENTICATED,
        "unauthenticated",
    )
    # Another business's template id, through that other business's own scope: not found.
    for call in (
        harness.client.call(
            "UpdateTemplate",
            pb.UpdateTemplateRequest(
                business_id=other_id, template_id=template.template_id, subject="x", body="y"
            ),
            metadata=other_owner,
        ),
        harness.client.call(
            "PreviewTemplate",
            pb.PreviewTemplateRequest(business_id=other_id, template_id=template.template_id),
            metadata=other_owner,
        ),
    ):
        await expect_error(call, grpc.StatusCode.NOT_FOUND, "template_not_found")
    await expect_error(
        harness.client.call(
            "SetOptOut",
            pb.SetOptOutRequest(business_id=business_id, channel=EMAIL, address="a@example.com"),
            metadata=staff,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "insufficient_role",
    )
    assert count(harness, "opt_out", business_id) == 0


async def test_opt_outs_set_list_in_pages_and_remove(harness: Notification) -> None:
    business_id, owner = tenant(harness)
    for channel, address in (
        (EMAIL, " Kim@Example.COM "),
        (SMS, "+4915112345678"),
        (EMAIL, "jo@example.com"),
    ):
        await harness.client.call(
            "SetOptOut",
            pb.SetOptOutRequest(business_id=business_id, channel=channel, address=address, reason="asked"),
            pb.SetOptOutResponse,
            metadata=owner,
        )
    seen: list[tuple[Channel, str]] = []
    token = ""
    while True:
        page = await harness.client.call(
            "ListOptOuts",
            pb.ListOptOutsRequest(business_id=business_id, page=PageRequest(page_size=2, page_token=token)),
            pb.ListOptOutsResponse,
            metadata=owner,
        )
        seen += [(o.channel, o.address) for o in page.opt_outs]
        token = page.page.next_page_token if page.page else ""
        if not token:
            break
    assert seen == [(EMAIL, "jo@example.com"), (EMAIL, "kim@example.com"), (SMS, "+4915112345678")]

    removed = await harness.client.call(
        "RemoveOptOut",
        pb.RemoveOptOutRequest(business_id=business_id, channel=EMAIL, address="KIM@example.com"),
        pb.RemoveOptOutResponse,
        metadata=owner,
    )
    again = await harness.client.call(
        "RemoveOptOut",
        pb.RemoveOptOutRequest(business_id=business_id, channel=EMAIL, address="kim@example.com"),
        pb.RemoveOptOutResponse,
        metadata=owner,
    )
    assert (removed.removed, again.removed) == (True, False)

    for channel, address, reason in (
        (SMS, "0151 123", "invalid_address"),
        (EMAIL, "not-an-address", "invalid_address"),
        (Channel.UNSPECIFIED, "a@example.com", "invalid_channel"),
    ):
        await expect_error(
            harness.client.call(
                "SetOptOut",
                pb.SetOptOutRequest(business_id=business_id, channel=channel, address=address),
                metadata=owner,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            reason,
        )
    await expect_error(
        harness.client.call(
            "ListOptOuts",
            pb.ListOptOutsRequest(business_id=business_id, page=PageRequest(page_token="garbage")),
            metadata=owner,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_page_token",
    )
    assert count(harness, "opt_out", business_id) == 2


async def test_list_deliveries_by_appointment_in_pages(harness: Notification) -> None:
    business_id, owner = tenant(harness, "staff")
    appointments = [reminder(harness.booking, business_id=business_id) for _ in range(3)]
    for r in appointments:
        assert (await harness.dispatcher.dispatch(job_of(r))).status == "sent"
    first = appointments[0]
    only = await harness.client.call(
        "ListDeliveries",
        pb.ListDeliveriesRequest(business_id=business_id, appointment_id=first.appointment_id),
        pb.ListDeliveriesResponse,
        metadata=owner,
    )
    assert [(d.appointment_id, d.status, d.recipient, d.kind) for d in only.deliveries] == [
        (first.appointment_id, pb.DeliveryStatus.SENT, first.recipient, REMINDER)
    ]
    ids: list[str] = []
    token = ""
    while True:
        page = await harness.client.call(
            "ListDeliveries",
            pb.ListDeliveriesRequest(
                business_id=business_id, page=PageRequest(page_size=2, page_token=token)
            ),
            pb.ListDeliveriesResponse,
            metadata=owner,
        )
        ids += [d.appointment_id for d in page.deliveries]
        token = page.page.next_page_token if page.page else ""
        if not token:
            break
    assert sorted(ids) == sorted(r.appointment_id for r in appointments)

    other_id, other_owner = tenant(harness)
    empty = await harness.client.call(
        "ListDeliveries",
        pb.ListDeliveriesRequest(business_id=other_id, appointment_id=first.appointment_id),
        pb.ListDeliveriesResponse,
        metadata=other_owner,
    )
    assert empty.deliveries == []
    await expect_error(
        harness.client.call(
            "ListDeliveries",
            pb.ListDeliveriesRequest(business_id=business_id, appointment_id="nope"),
            metadata=owner,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_appointment_id",
    )
