"""One exception tree for the fleet, mapped to the contract's error body only at the edge.

Shared and domain code raise these; `shared.http.install_error_handlers` turns them into
`{"error": {"code", "message"}}` responses. Nothing below the edge raises `HTTPException`.
"""

from __future__ import annotations

from typing import ClassVar


class FerryError(Exception):
    """Base of every error a client may see. `status` and `code` are the contract's."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = code or self.code
        self.headers = headers or {}


class Unauthorized(FerryError):
    status = 401
    code = "unauthorized"


class Forbidden(FerryError):
    status = 403
    code = "forbidden"


class NotFound(FerryError):
    """Also what a caller gets for something that exists but that it may not see."""

    status = 404
    code = "not_found"


class Conflict(FerryError):
    status = 409
    code = "conflict"


class Gone(FerryError):
    status = 410
    code = "gone"


class PayloadTooLarge(FerryError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(FerryError):
    status = 415
    code = "unsupported_media_type"


class Unprocessable(FerryError):
    status = 422
    code = "validation_error"


class RateLimited(FerryError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_seconds: int, code: str | None = None) -> None:
        super().__init__(
            message, code=code, headers={"Retry-After": str(max(1, retry_after_seconds))}
        )
        self.retry_after_seconds = max(1, retry_after_seconds)


class UnavailableForLegalReasons(FerryError):
    status = 451
    code = "blocked"


class DependencyUnavailable(FerryError):
    """A backing service (AWS or another Ferry service) did not answer: retry later."""

    status = 503
    code = "dependency_unavailable"
