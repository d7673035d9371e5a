"""The availability cache: a cached answer changes right after every write that changes availability, and is
always the answer the uncached engine gives (real service over gRPC, real Postgres, real business events)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY

from apptremind_booking import events, service
from apptremind_booking.availability import (
    BookingRules,
    Busy,
    Override,
    OverrideKind,
    ServiceRule,
    Slot,
    StaffSchedule,
    WeeklyInterval,
    available_slots,
    earliest_day,
    slots_from_day,
    within_notice_and_window,
)
from apptremind_booking.availability_cache import AvailabilityCache, Entry, Key
from apptremind_booking.wire import SlotEncoder, slot_message
from apptremind_gen.apptremind.booking import v1 as pb
from apptremind_gen.apptremind.business import v1 as business_pb
from apptremind_gen.apptremind.events.business import v1 as business_ev
from apptremind_platform.db import unit_of_work
from apptremind_platform.envelope import Event
from tests.integration.booking.support import Catalog, Harness, Tenant, interval, utc

Answer = list[tuple[dt.datetime, dt.datetime, str, str]]


@dataclass(frozen=True)
class Query:
    tenant: Tenant
    start: dt.datetime
    end: dt.datetime
    zone: str = "America/New_York"
    staff_id: str = ""


async def rpc(harness: Harness, q: Query) -> Answer:
    response = await harness.call(
        "GetAvailability",
        pb.GetAvailabilityRequest(
            business_id=q.tenant.business_id,
            service_id=q.tenant.service_id,
            staff_id=q.staff_id,
            from_time=q.start,
            to_time=q.end,
            time_zone=q.zone,
        ),
        pb.GetAvailabilityResponse,
    )
    return [
        (s.start_time, s.end_time, s.staff_id, s.local_start)
        for s in response.slots
        if s.start_time is not None and s.end_time is not None
    ]


async def uncached(harness: Harness, q: Query) -> Answer:
    """The engine's answer straight from the read model and appointments, no cache involved."""
    assert harness.runtime.pool is not None
    async with unit_of_work(harness.runtime.pool) as conn:
        slots = await service.get_availability(
            conn,
            q.tenant.business_id,
            q.tenant.service_id,
            q.staff_id,
            q.start,
            q.end,
            q.zone,
            harness.clock.now(),
        )
    return [(s.start, s.end, s.staff_id, label) for s, label in slots]


def lookups(outcome: str) -> float:
    return REGISTRY.get_sample_value("booking_availability_cache_lookups_total", {"outcome": outcome}) or 0.0


async def cached_and_same(harness: Harness, q: Query) -> Answer:
    """Asks twice: the second answer comes from the cache, and both equal the uncached engine's."""
    first = await rpc(harness, q)
    hits = lookups("hit")
    second = await rpc(harness, q)
    assert lookups("hit") == hits + 1, "the repeated query was not served from the cache"
    assert first == second == await uncached(harness, q)
    return second


def starts(answer: Answer) -> list[dt.datetime]:
    return [start for start, *_ in answer]


async def test_a_booking_shows_in_the_very_next_answer(harness: Harness) -> None:
    tenant = await harness.tenant()
    q = Query(tenant, utc(2030, 6, 4), utc(2030, 6, 6))
    ten = utc(2030, 6, 4, 8)  # 10:00 in Berlin
    assert ten in starts(await cached_and_same(harness, q))

    stale = lookups("stale")
    await harness.book(tenant, ten)
    after = await rpc(harness, q)
    assert lookups("stale") == stale + 1
    assert ten not in starts(after)
    assert after == await uncached(harness, q)
    assert await cached_and_same(harness, q) == after


async def test_cancel_and_reschedule_show_in_the_very_next_answer(harness: Harness) -> None:
    tenant = await harness.tenant()
    q = Query(tenant, utc(2030, 6, 4), utc(2030, 6, 6), staff_id=tenant.staff_ids[0])
    ten, two = utc(2030, 6, 4, 8), utc(2030, 6, 4, 12)  # 10:00 and 14:00 in Berlin
    booked = await harness.book(tenant, ten)
    assert booked.appointment is not None
    aid = booked.appointment.appointment_id
    before = await cached_and_same(harness, q)
    assert ten not in starts(before) and two in starts(before)

    await harness.call(
        "RescheduleAppointment",
        pb.RescheduleAppointmentRequest(business_id=tenant.business_id, appointment_id=aid, start_time=two),
        pb.RescheduleAppointmentResponse,
        tenant.owner,
    )
    moved = await rpc(harness, q)
    assert ten in starts(moved) and two not in starts(moved)
    assert moved == await uncached(harness, q)
    assert await cached_and_same(harness, q) == moved

    await harness.call(
        "CancelAppointment",
        pb.CancelAppointmentRequest(business_id=tenant.business_id, appointment_id=aid, reason="x"),
        pb.CancelAppointmentResponse,
        tenant.owner,
    )
    cancelled = await rpc(harness, q)
    assert ten in starts(cancelled) and two in starts(cancelled)
    assert cancelled == await uncached(harness, q)
    assert await cached_and_same(harness, q) == cancelled


@pytest.mark.parametrize("method", ["CompleteAppointment", "MarkNoShow"])
async def test_leaving_the_booked_status_shows_in_the_very_next_answer(harness: Harness, method: str) -> None:
    tenant = await harness.tenant()
    q = Query(tenant, utc(2030, 6, 4), utc(2030, 6, 6))
    ten = utc(2030, 6, 4, 8)
    booked = await harness.book(tenant, ten)
    assert booked.appointment is not None
    assert ten not in starts(await cached_and_same(harness, q))
    request_type = pb.CompleteAppointmentRequest if method == "CompleteAppointment" else pb.MarkNoShowRequest
    response_type = (
        pb.CompleteAppointmentResponse if method == "CompleteAppointment" else pb.MarkNoShowResponse
    )
    await harness.call(
        method,
        request_type(business_id=tenant.business_id, appointment_id=booked.appointment.appointment_id),
        response_type,
        tenant.owner,
    )
    after = await rpc(harness, q)
    assert ten in starts(after)
    assert after == await uncached(harness, q)


async def test_read_model_changes_show_in_the_very_next_answer(harness: Harness) -> None:
    tenant = await harness.tenant()
    staff_id = tenant.staff_ids[0]
    q = Query(tenant, utc(2030, 6, 4), utc(2030, 6, 6))
    first = await cached_and_same(harness, q)
    assert len(first) > 20

    # New weekly hours: Tuesday 14:00-15:00 only.
    await harness.feed(
        Event(
            events.SCHEDULE_CHANGED,
            tenant.business_id,
            business_ev.ScheduleChanged(
                business_id=tenant.business_id, staff_id=staff_id, hours=[interval(2, "14:00", "15:00")]
            ),
        )
    )
    hours = await rpc(harness, q)
    assert [local[11:16] for *_, local in hours] == ["08:00", "08:15", "08:30"]  # New York labels
    assert hours == await uncached(harness, q)
    assert await cached_and_same(harness, q) == hours

    # Time off over 14:00-14:30 Berlin leaves only 14:30.
    await harness.feed(
        Event(
            events.DATE_OVERRIDE_ADDED,
            tenant.business_id,
            business_ev.DateOverrideAdded(
                date_override=business_pb.DateOverride(
                    override_id=str(uuid.uuid4()),
                    business_id=tenant.business_id,
                    staff_id=staff_id,
                    kind=business_pb.DateOverrideKind.TIME_OFF,
                    start_time=utc(2030, 6, 4, 12),
                    end_time=utc(2030, 6, 4, 12, 30),
                )
            ),
        )
    )
    off = await rpc(harness, q)
    assert starts(off) == [utc(2030, 6, 4, 12, 30)]
    assert off == await uncached(harness, q)

    # A longer service no longer fits in the remaining half hour.
    await harness.feed(
        Event(
            events.SERVICE_CHANGED,
            tenant.business_id,
            business_ev.ServiceChanged(
                service=business_pb.Service(
                    service_id=tenant.service_id,
                    business_id=tenant.business_id,
                    name="Cut",
                    duration_minutes=45,
                    staff_ids=[staff_id],
                    active=True,
                )
            ),
        )
    )
    assert await rpc(harness, q) == [] == await uncached(harness, q)


async def test_answers_follow_the_clock_exactly_like_the_engine(harness: Harness) -> None:
    """Notice and window move with `now` while the cache keeps its entries, and the first computed day (which
    can move a grid's anchor, see availability.slots_from_day) is part of the entry's validity."""
    tenant = await harness.tenant(Catalog(staff=2, hours=[interval(1, "09:00", "17:00")]))
    # Extra hours from Tuesday 10:05 to Friday 18:00 Berlin: a query whose first computed day is Thursday has
    # its lead-in day (Wednesday) fully inside them and anchors the grid at midnight instead of 10:05.
    await harness.feed(
        Event(
            events.DATE_OVERRIDE_ADDED,
            tenant.business_id,
            business_ev.DateOverrideAdded(
                date_override=business_pb.DateOverride(
                    override_id=str(uuid.uuid4()),
                    business_id=tenant.business_id,
                    staff_id=tenant.staff_ids[1],
                    kind=business_pb.DateOverrideKind.EXTRA_HOURS,
                    start_time=utc(2030, 6, 4, 8, 5),
                    end_time=utc(2030, 6, 7, 16),
                )
            ),
        )
    )
    queries = [
        Query(tenant, utc(2030, 6, 3), utc(2030, 6, 10)),
        Query(tenant, utc(2030, 6, 3), utc(2030, 6, 10), zone="Asia/Tokyo", staff_id=tenant.staff_ids[1]),
        Query(tenant, utc(2030, 6, 5, 22), utc(2030, 6, 6, 22), staff_id=tenant.staff_ids[1]),
    ]
    friday_minutes: dict[dt.datetime, set[int]] = {}
    clock = [
        utc(2030, 6, 3, 6),
        utc(2030, 6, 3, 6, 7),
        utc(2030, 6, 3, 14, 59),
        utc(2030, 6, 4, 3),
        utc(2030, 6, 5, 19),  # the earliest start is Wednesday 23:00 Berlin ...
        utc(2030, 6, 5, 22, 30),  # ... and now Thursday
        utc(2030, 6, 6, 9, 44),
    ]
    for n, now in enumerate(clock):
        harness.clock.set(now)
        for q in queries:
            answer = await rpc(harness, q)
            assert answer == await uncached(harness, q), (now, q)
            assert all(start >= now + dt.timedelta(hours=2) for start in starts(answer))
        friday_minutes[now] = {
            start.minute
            for start in starts(await rpc(harness, queries[1]))
            if start.date() == dt.date(2030, 6, 7)
        }
        if n == 3:
            # A write between clock steps is seen too.
            # (The booking re-check computes from Thursday itself, so its grid there is anchored at midnight.)
            await harness.book(tenant, utc(2030, 6, 6, 10), staff_id=tenant.staff_ids[1])
    # The scenario does exercise the anchor: Friday's grid differs depending on the first computed day.
    assert friday_minutes[utc(2030, 6, 3, 6)] != friday_minutes[utc(2030, 6, 5, 22, 30)]


# --- the engine's contract the cache relies on, over many random calendars ----------------------------------

ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata")


def _random_calendar(rng: random.Random) -> dict[str, object]:
    zone = rng.choice(ZONES)
    tz = ZoneInfo(zone)
    staff = [f"s{i}" for i in range(rng.randint(1, 3))]
    schedules = []
    for member in staff:
        hours, breaks = [], []
        for weekday in range(1, 8):
            if rng.random() < 0.8:
                first = rng.randrange(0, 20 * 60, 5)
                last = min(1440, first + rng.randrange(60, 16 * 60, 5))
                hours.append(WeeklyInterval(weekday, first, last))
                if rng.random() < 0.4 and last - first > 120:
                    breaks.append(WeeklyInterval(weekday, first + 60, first + 90))
        schedules.append(StaffSchedule(member, tuple(hours), tuple(breaks)))
    # Around DST changes of the northern and southern hemispheres.
    base = dt.datetime(rng.choice([2030, 2031]), rng.choice([3, 4, 9, 10, 11]), rng.randint(1, 25), tzinfo=tz)
    overrides = []
    for _ in range(rng.randint(0, 4)):
        start = base + dt.timedelta(minutes=rng.randrange(0, 10 * 1440, 5))
        kind: OverrideKind = rng.choice(["extra_hours", "extra_hours", "time_off", "holiday"])
        length = dt.timedelta(minutes=rng.randrange(30, 4 * 1440, 5))
        overrides.append(Override(rng.choice([None, *staff]), kind, start, start + length))
    busy = []
    for _ in range(rng.randint(0, 40)):
        start = base + dt.timedelta(minutes=rng.randrange(0, 12 * 1440, 5))
        busy.append(Busy(rng.choice(staff), start, start + dt.timedelta(minutes=rng.randrange(15, 180, 5))))
    return {
        "business_tz": zone,
        "service": ServiceRule(
            dt.timedelta(minutes=rng.choice([15, 30, 45, 90])),
            dt.timedelta(minutes=rng.choice([0, 0, 10])),
            dt.timedelta(minutes=rng.choice([0, 5, 15])),
            frozenset(staff),
        ),
        "staff": schedules,
        "overrides": overrides,
        "busy": busy,
        "rules": BookingRules(
            slot_interval=dt.timedelta(minutes=rng.choice([15, 20, 25, 60])),
            min_notice=dt.timedelta(minutes=rng.choice([0, 120, 1500])),
            window=dt.timedelta(days=rng.choice([3, 60])),
        ),
        "range_start": base + dt.timedelta(minutes=rng.randrange(0, 3 * 1440, 15)),
        "staff_id": rng.choice([None, staff[0]]),
        "_base": base,
    }


def test_one_cached_computation_answers_every_now_of_its_first_day_like_the_engine() -> None:
    rng = random.Random(20300603)
    compared = nonempty = 0
    for _ in range(150):
        calendar = _random_calendar(rng)
        base = calendar.pop("_base")
        assert isinstance(base, dt.datetime)
        range_start = calendar.pop("range_start")
        assert isinstance(range_start, dt.datetime)
        range_end = range_start + dt.timedelta(days=rng.choice([1, 5, 14]))
        rules = calendar["rules"]
        assert isinstance(rules, BookingRules)
        zone = calendar["business_tz"]
        assert isinstance(zone, str)
        cached: dict[dt.date, list[Slot]] = {}
        now = range_start - dt.timedelta(days=2, minutes=rng.randrange(0, 1440))
        # Walk `now` forward through the range, reusing one computation per first day like the cache does.
        while now < range_end + dt.timedelta(hours=1):
            day = earliest_day(business_tz=zone, rules=rules, range_start=range_start, now=now)
            if day not in cached:
                cached[day] = slots_from_day(
                    **calendar,  # type: ignore[arg-type]
                    range_start=range_start,
                    range_end=range_end,
                    first_day=day,
                )
            expected = available_slots(
                **calendar,  # type: ignore[arg-type]
                range_start=range_start,
                range_end=range_end,
                now=now,
            )
            assert within_notice_and_window(cached[day], rules, now) == expected, (calendar, now)
            compared += 1
            nonempty += bool(expected)
            now += dt.timedelta(minutes=rng.randrange(7, 600))
    assert compared > 1000 and nonempty > compared // 4


def _entry(generation: int, n: int) -> Entry:
    start = utc(2030, 6, 4)
    slots = [
        (Slot(start + dt.timedelta(minutes=15 * i), start + dt.timedelta(minutes=15 * i + 30), "s"), "label")
        for i in range(n)
    ]
    return Entry.of(generation, "Europe/Berlin", dt.date(2030, 6, 4), slots)


def _key(n: int) -> Key:
    return Key(uuid.UUID(int=n), uuid.UUID(int=0), None, utc(2030, 6, 4), utc(2030, 6, 5), "UTC")


def test_the_cache_is_bounded_by_slots_and_evicts_least_recently_used() -> None:
    cache = AvailabilityCache(max_slots=100)
    for n in range(3):
        cache.put(_key(n), _entry(1, 40))
    # 120 slots > 100: the oldest entry went.
    assert (cache.get(_key(0)), len(cache), cache.cached_slots) == (None, 2, 80)
    assert cache.get(_key(1)) is not None  # now the most recently used
    cache.put(_key(3), _entry(1, 40))
    assert cache.get(_key(2)) is None and cache.get(_key(1)) is not None
    # Replacing an entry replaces its weight; one larger than the whole budget is not kept at all.
    cache.put(_key(1), _entry(2, 10))
    assert cache.cached_slots == 50
    cache.put(_key(4), _entry(1, 101))
    assert cache.get(_key(4)) is None and cache.cached_slots == 50
    # Empty answers still count, so the number of entries is bounded too.
    for n in range(10, 200):
        cache.put(_key(n), _entry(1, 0))
    assert len(cache) <= 100


def test_bookable_cuts_notice_and_window_from_a_cached_entry() -> None:
    entry = _entry(1, 96)  # every 15 min of 2030-06-04 UTC
    rules = BookingRules(min_notice=dt.timedelta(hours=2), window=dt.timedelta(hours=5))
    now = utc(2030, 6, 4, 6, 7)
    got = [slot.start for slot, _ in entry.bookable(rules, now)]
    assert got[0] == utc(2030, 6, 4, 8, 15) and got[-1] == utc(2030, 6, 4, 11)
    assert got == [s.start for s in within_notice_and_window([s for s, _ in entry.slots], rules, now)]


def test_encoded_responses_are_byte_for_byte_what_betterproto2_encodes() -> None:
    rng = random.Random(7)
    encoder = SlotEncoder(max_slots=50)
    for n in (0, 1, 3, 40, 120):  # 120 > max_slots: the memo starts over on the way
        start = utc(2030, 6, 4) + dt.timedelta(minutes=15 * rng.randrange(96))
        slots = [
            (
                Slot(
                    start + dt.timedelta(minutes=15 * i),
                    start + dt.timedelta(minutes=15 * i + 45),
                    f"s{i % 3}",
                ),
                f"2030-06-04T0{i % 10}:00:00+02:00 ü",
            )
            for i in range(n)
        ]
        for _ in range(2):  # encoded, then from the memo
            wire = bytes(encoder.response(slots))
            assert wire == bytes(
                pb.GetAvailabilityResponse(slots=[slot_message(s, label) for s, label in slots])
            )
            assert pb.GetAvailabilityResponse.FromString(wire).slots == [
                slot_message(s, lb) for s, lb in slots
            ]
