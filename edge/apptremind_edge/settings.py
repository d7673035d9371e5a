"""Edge configuration from the environment (`APPTREMIND_*`); secrets come only from the environment.

`APPTREMIND_SERVICE_TARGETS` names every gRPC service the edge may call, as comma-separated
`name=host:port` pairs, e.g. `auth=127.0.0.1:50051,business=127.0.0.1:50052`. The defaults are the
ports `make up` gives the services, so a developer's edge finds the local stack without configuration.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from apptremind_platform.webhook_signatures import STRIPE_DEFAULT_TOLERANCE_S

# The `make up` port of every service (engineering guide §5).
DEFAULT_SERVICE_TARGETS: dict[str, str] = {
    "auth": "127.0.0.1:50051",
    "business": "127.0.0.1:50052",
    "booking": "127.0.0.1:50053",
    "billing": "127.0.0.1:50054",
    "scheduler": "127.0.0.1:50055",
    "notification": "127.0.0.1:50056",
    "analytics": "127.0.0.1:50057",
}


def parse_service_targets(raw: str) -> dict[str, str]:
    """Parse `name=host:port,...` into an ordered name → target map, rejecting anything ambiguous.

    A typo here would otherwise surface only as an UNREACHABLE service at runtime, so a malformed entry,
    an empty name or a duplicated name fails at startup instead.
    """
    targets: dict[str, str] = {}
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        name, sep, target = (s.strip() for s in entry.partition("="))
        if not sep or not name or not target:
            raise ValueError(f"service target {entry!r} is not of the form name=host:port")
        host, colon, port = target.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"service target {entry!r} needs host:port with a port in 1..65535")
        if name in targets:
            raise ValueError(f"service {name!r} is listed twice in the service targets")
        targets[name] = target
    return targets


class EdgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APPTREMIND_", extra="ignore")

    edge_host: str = "127.0.0.1"
    edge_port: int = Field(default=8080, ge=0, le=65535)
    # NoDecode: the variable is the readable `name=host:port` list, not JSON, so pydantic-settings must
    # hand the raw string to the validator below instead of trying to JSON-decode it.
    service_targets: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_SERVICE_TARGETS)
    )
    # GraphQL requests are small; a cap keeps a client from making the edge buffer megabytes of JSON.
    edge_max_body_bytes: int = Field(default=64 * 1024, gt=0)
    # Depth is the cheapest guard against queries that fan out into many service calls.
    edge_max_query_depth: int = Field(default=10, ge=0)
    # Deadline of each service call a GraphQL request makes (services pass what is left of it on).
    edge_call_timeout_s: float = Field(default=5.0, gt=0)
    # Deadline of each upstream health check; one slow service must not stall /readyz for long.
    edge_health_timeout_s: float = Field(default=1.0, gt=0)
    # Query cost: every selected field counts 1, a list field multiplies its selection by its page size.
    edge_max_query_complexity: int = Field(default=2000, gt=0)
    # Brute-force protection: attempts per minute.
    edge_login_per_ip_per_minute: int = Field(default=20, gt=0)
    edge_login_per_account_per_minute: int = Field(default=5, gt=0)
    edge_signup_per_ip_per_minute: int = Field(default=5, gt=0)
    # Public booking pages: availability and bookings per client IP, and bookings per business.
    edge_public_per_ip_per_minute: int = Field(default=120, gt=0)
    edge_bookings_per_business_per_minute: int = Field(default=600, gt=0)
    # Seconds a public availability answer is reused for identical requests (docs/adr/0015); 0 turns it off.
    edge_availability_cache_ttl_s: float = Field(default=1.0, ge=0)
    # The in-browser IDE is a development aid, off unless asked for.
    edge_graphiql: bool = False
    # SMS provider webhooks: the provider account's auth token (Twilio signs callbacks with it; empty refuses
    # every webhook) and the public base URL the provider posts to, which the signature covers.
    edge_sms_auth_token: SecretStr = SecretStr("")
    edge_public_base_url: str = ""
    edge_webhook_timeout_s: float = Field(default=10.0, gt=0)
    # Stripe webhooks: the endpoint's signing secret (whsec_...; empty refuses every event with 503 so Stripe
    # keeps it until the edge is configured) and how far the signed timestamp may be from now, either way.
    edge_stripe_webhook_secret: SecretStr = SecretStr("")
    edge_stripe_webhook_tolerance_s: int = Field(default=STRIPE_DEFAULT_TOLERANCE_S, gt=0)
    log_level: str = "info"

    @field_validator("service_targets", mode="before")
    @classmethod
    def _parse_targets(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_service_targets(value)
        if isinstance(value, dict):
            # Targets given in code go through the same checks as those read from the environment.
            return parse_service_targets(",".join(f"{name}={target}" for name, target in value.items()))
        return value
