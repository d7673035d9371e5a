"""The notification-service's settings: the platform's plus booking's address, the SMS webhook secret and
the dispatch pipeline's knobs. The providers' own settings (APPTREMIND_SMTP_*, APPTREMIND_SMS_*) live in
channels/settings.py."""

from __future__ import annotations

from pydantic import BaseModel, Field

from apptremind_platform.processing import RetryPolicy
from apptremind_platform.settings import ServiceSettings


class ProviderRetry(BaseModel):
    max_attempts: int = Field(ge=1)
    base_delay_s: float = Field(gt=0)
    max_delay_s: float = Field(gt=0)


class NotificationSettings(ServiceSettings):
    service_name: str = "notification"
    # booking-service: GetReminderStatus before every reminder, Confirm/Cancel for SMS replies.
    booking_target: str = "127.0.0.1:50053"
    booking_timeout_s: float = Field(default=5.0, gt=0)
    # Pre-send checks in flight at once per process; more wait their turn, unhurried by booking_timeout_s
    # (a batch of 256 due reminders must not turn a slow booking-service into 256 timeouts).
    booking_max_inflight: int = Field(default=32, ge=1)
    # billing-service meters SMS: every SMS reminder holds one credit of the plan's quota
    # (APPTREMIND_SMS_METERING; needs this service's client credentials, APPTREMIND_SERVICE_CLIENT_SECRET).
    # false only for harnesses and local runs without billing.
    sms_metering: bool = True
    billing_target: str = "127.0.0.1:50054"
    billing_timeout_s: float = Field(default=5.0, gt=0)
    # SMS credit reservations in flight at once per process (as booking_max_inflight).
    billing_max_inflight: int = Field(default=32, ge=1)
    # The SMS provider account's auth token (the same APPTREMIND_SMS_AUTH_TOKEN the provider sends with):
    # status callbacks and inbound replies are signed with it. A secondary provider's token also counts.
    sms_auth_token: str = ""
    sms2_auth_token: str = ""
    # Replies C / X act on the latest SMS reminder sent to that number within this many days.
    reply_window_days: int = Field(default=14, gt=0)
    # A reminder handled later than this after its remind_at is "late": an SMS is then re-checked against
    # the business's quiet hours.
    late_after_s: float = Field(default=300.0, ge=0)
    # Retries of a retryable provider failure (backoff with full jitter), then the DLQ.
    dispatch_max_attempts: int = Field(default=6, ge=1)
    dispatch_base_delay_s: float = Field(default=1.0, gt=0)
    dispatch_max_delay_s: float = Field(default=60.0, gt=0)
    # Per provider (by its name: smtp, smtp2, sms, sms2) instead of the above, as JSON, e.g.
    # APPTREMIND_PROVIDER_RETRY='{"sms": {"max_attempts": 4, "base_delay_s": 5, "max_delay_s": 120}}'.
    provider_retry: dict[str, ProviderRetry] = Field(default_factory=dict)

    @property
    def sms_auth_tokens(self) -> tuple[str, ...]:
        return tuple(t for t in (self.sms_auth_token, self.sms2_auth_token) if t)

    @property
    def dispatch_policy(self) -> RetryPolicy:
        return RetryPolicy(self.dispatch_max_attempts, self.dispatch_base_delay_s, self.dispatch_max_delay_s)

    @property
    def provider_policies(self) -> dict[str, RetryPolicy]:
        return {
            name: RetryPolicy(r.max_attempts, r.base_delay_s, r.max_delay_s)
            for name, r in self.provider_retry.items()
        }
