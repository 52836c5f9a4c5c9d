"""The settings base every service's one settings class extends.

Values come from the environment (and a `.env` file); AWS endpoints and credentials are NOT
settings: botocore reads them itself (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`, ...), so the
same image runs against moto, LocalStack and AWS with no code change.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.resources import ResourceNames

DEV_JWT_SECRET = "dev-secret-change-me"
DEV_INTERNAL_TOKEN = "dev-internal-token-change-me"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = "development"
    resource_prefix: str = Field("ferry", pattern=r"^[a-z0-9][a-z0-9-]{1,40}$")
    bucket_name: str | None = None
    aws_region: str = "us-east-1"
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    aws_max_attempts: int = Field(3, ge=1, le=10)
    auth_jwt_secret: str = DEV_JWT_SECRET
    internal_token: str = DEV_INTERNAL_TOKEN
    auth_jwks_url: str | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = None
    auth_roles_claim: str = Field("roles", min_length=1, max_length=200)
    auth_jwks_cache_seconds: float = Field(300, gt=0, le=86400)
    auth_jwks_refresh_cooldown_seconds: float = Field(30, ge=0, le=3600)
    log_level: str = "INFO"
    log_json: bool = True
    # request bodies above this get 413 `request_too_large` before any route or auth runs
    max_request_bytes: int = Field(65_536, ge=1024)
    # request headers above this in total get 431 `request_headers_too_large`
    max_header_bytes: int = Field(16_384, ge=4096)
    # Origins whose pages may call the public HTTP services (comma-separated, `*` for any, empty:
    # none); the default is the web client the gateway serves locally (`make run`).
    cors_allowed_origins: str = "http://127.0.0.1:8080,http://localhost:8080"

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Self:
        if self.environment == "production":
            if self.auth_jwt_secret == DEV_JWT_SECRET or len(self.auth_jwt_secret) < 32:
                raise ValueError("AUTH_JWT_SECRET must be a real secret of 32+ chars in production")
            if self.internal_token == DEV_INTERNAL_TOKEN or len(self.internal_token) < 32:
                raise ValueError("INTERNAL_TOKEN must be a real secret of 32+ chars in production")
        return self

    @property
    def resources(self) -> ResourceNames:
        return ResourceNames(prefix=self.resource_prefix, bucket_override=self.bucket_name)


# Field types a service re-defaults without restating their bounds (`bind_port: Port = 8081`).
Port = Annotated[int, Field(ge=0, le=65535)]
GraceSeconds = Annotated[float, Field(ge=0, le=3600)]


class ServiceSettings(CommonSettings):
    """What every served service adds (`shared.serve`): where it listens, how long a stop takes."""

    bind_host: str = "127.0.0.1"
    bind_port: Port = 8080
    shutdown_grace_seconds: GraceSeconds = 10
