"""Events the auth-service publishes through its outbox, and its consumer of business.created.v1.

The consumer is the auth side of the signup saga: when business-service has created the business a user
signed up for, grant that user the owner membership. The inbox drops redelivered messages; the membership's
primary key drops replays that arrive under a new message id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg_pool import AsyncConnectionPool

from apptremind_gen.apptremind.auth.v1 import BusinessDraft as BusinessDraftProto
from apptremind_gen.apptremind.events.auth.v1 import MembershipGranted, UserCreated
from apptremind_gen.apptremind.events.business.v1 import BusinessCreated
from apptremind_platform.db import Conn
from apptremind_platform.envelope import Decoded, Event
from apptremind_platform.errors import DomainError
from apptremind_platform.processing import MessageProcessor, PermanentError

from .model import BusinessDraft, Membership, User

if TYPE_CHECKING:
    from .service import AuthService

SOURCE = "auth"
# The consumer name in the inbox (and the Kafka consumer group, which is the service name).
CONSUMER = "auth"

USER_CREATED = "auth.user.created.v1"
MEMBERSHIP_GRANTED = "auth.membership.granted.v1"
BUSINESS_CREATED = "business.created.v1"


def user_created(user: User, draft: BusinessDraft | None) -> Event:
    business = (
        BusinessDraftProto(
            name=draft.name,
            slug=draft.slug,
            time_zone=draft.time_zone,
            locale=draft.locale,
            currency=draft.currency,
        )
        if draft is not None
        else None
    )
    # No business exists yet (creating one is what this event asks for), so the envelope's business_id is
    # empty, as the envelope contract prescribes for events that belong to no business; the user keys it.
    return Event(
        USER_CREATED,
        business_id="",
        key=str(user.user_id),
        subject=str(user.user_id),
        data=UserCreated(
            user_id=str(user.user_id), email=user.email, created_at=user.created_at, business=business
        ),
    )


def membership_granted(membership: Membership) -> Event:
    return Event(
        MEMBERSHIP_GRANTED,
        business_id=str(membership.business_id),
        subject=str(membership.user_id),
        data=MembershipGranted(
            business_id=str(membership.business_id),
            user_id=str(membership.user_id),
            role=membership.role,
        ),
    )


def saga_processor(pool: AsyncConnectionPool, service: AuthService) -> MessageProcessor:
    async def on_business_created(conn: Conn, decoded: Decoded) -> None:
        data = decoded.data
        if not isinstance(data, BusinessCreated):
            raise PermanentError(f"{BUSINESS_CREATED} carries {type(data).__name__}")
        try:
            await service.grant_owner(conn, data.business_id, data.owner_user_id)
        except DomainError as exc:
            # Bad ids or an owner this service never created: retrying cannot help, so straight to the DLQ.
            raise PermanentError(f"{exc.reason}: {exc.message}") from exc

    return MessageProcessor(CONSUMER, SOURCE, pool, {BUSINESS_CREATED: on_business_created})
