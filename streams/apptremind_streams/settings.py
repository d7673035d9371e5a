"""The stream worker's settings: notification-service's (its database, booking's address, the dispatch
retry policy) plus the Faust app's own. Providers read APPTREMIND_SMTP_* / APPTREMIND_SMS_* themselves."""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import Field, field_validator

from apptremind_notification.settings import NotificationSettings


class StreamsSettings(NotificationSettings):
    service_name: str = "streams"
    # The Faust app id is also its Kafka consumer group.
    streams_app_id: str = "apptremind-streams"
    # Faust keeps table state here; the agents use no tables, so a temporary directory is enough.
    streams_data_dir: Path = Field(default_factory=lambda: Path(tempfile.gettempdir()) / "apptremind-streams")
    streams_log_level: str = "info"
    # Due reminders (and status events) are handled in batches of up to this many at once (one chain per
    # appointment), waiting at most streams_batch_wait_s to fill one. Larger batches share more commits:
    # measured at 250 due/s offered on 2 cores, 32 sustained 175/s, 128 197/s and 256 209/s. Sends still
    # queue for the providers' connections, so a batch does not mean that many sends at once.
    streams_batch_size: int = Field(default=256, ge=1)
    streams_batch_wait_s: float = Field(default=0.02, gt=0)
    # The agents' transactions go through one group commit, one transaction at a time by default (see
    # group_commit.py on deadlocks); each in flight holds a connection, and dead-lettering needs a few more.
    streams_commit_groups: int = Field(default=1, ge=1)
    db_pool_max: int = 8
    # Where a consumer group without committed offsets starts.
    streams_offset_reset: str = "earliest"

    @field_validator("streams_log_level")
    @classmethod
    def _faust_level(cls, value: str) -> str:
        # Faust's own names for the usual logging levels.
        return {"warning": "warn", "critical": "crit"}.get(value.lower(), value.lower())
