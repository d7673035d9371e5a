"""Process configuration from the environment (APPTREMIND_*); secrets come only from the environment."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APPTREMIND_KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:19092"


class ServiceSettings(BaseSettings):
    """What every service process needs; a service's own settings subclass this."""

    model_config = SettingsConfigDict(env_prefix="APPTREMIND_", extra="ignore")

    service_name: str = "platform"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 0
    http_port: int = 0
    # The service's own runtime role on its own database (least privilege: DML only).
    database_url: str = "postgresql://postgres:postgres@127.0.0.1:15432/postgres"
    db_pool_min: int = 1
    db_pool_max: int = 10
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    # Kafka consumer group (default: the service name) and where a new group starts.
    consumer_group: str = ""
    consumer_offset_reset: str = "earliest"
    # Where the auth-service's JWKS comes from, to verify access tokens (and where service tokens come from).
    auth_target: str = "127.0.0.1:50051"
    # This service's client secret at auth-service, for calls made on its own behalf (ADR 0013; the client id
    # is service_name). Empty: the service holds no service credentials.
    service_client_secret: SecretStr = SecretStr("")
    log_level: str = "info"
    # How often readiness re-checks the database and Kafka.
    readiness_interval_s: float = 2.0
    # Time SIGTERM gives in-flight calls to finish.
    shutdown_grace_s: float = 10.0
    # "none", "console", or an OTLP endpoint URL.
    otel_exporter: str = "none"
