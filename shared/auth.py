"""Identity: HS256 JWTs with `sub`, `device` and `exp`, and the internal service token."""

from __future__ import annotations

import hmac
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import jwt
from jwt.warnings import InsecureKeyLengthWarning
from pydantic import BaseModel, ConfigDict

from shared.errors import Unauthorized
from shared.settings import DEV_JWT_SECRET

ALGORITHM = "HS256"
DEFAULT_DEVICE = "default"
INTERNAL_TOKEN_HEADER = "X-Internal-Token"
ADMIN_ROLE = "admin"


class Identity(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    device_id: str = DEFAULT_DEVICE
    # From the token's `roles` claim (`["admin"]` for operators); anything odd counts as none.
    roles: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


@contextmanager
def _quiet_about_the_dev_secret(secret: str) -> Iterator[None]:
    """The documented local secret is short by contract; production refuses it at start."""
    with warnings.catch_warnings():
        if secret == DEV_JWT_SECRET:
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        yield


def issue_token(
    user_id: str,
    secret: str,
    *,
    device_id: str = DEFAULT_DEVICE,
    ttl: timedelta = timedelta(days=1),
    roles: tuple[str, ...] = (),
) -> str:
    expires = datetime.now(UTC) + ttl
    claims: dict[str, object] = {"sub": user_id, "device": device_id, "exp": expires}
    if roles:
        claims["roles"] = list(roles)
    with _quiet_about_the_dev_secret(secret):
        return jwt.encode(claims, secret, ALGORITHM)


def verify_token(token: str, secret: str) -> Identity:
    """The identity in a token; `Unauthorized` for a missing, expired, forged or odd token."""
    if not token:
        raise Unauthorized("a bearer token is required")
    try:
        with _quiet_about_the_dev_secret(secret):
            claims = jwt.decode(
                token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
            )
    except jwt.ExpiredSignatureError as error:
        raise Unauthorized("the token has expired", code="token_expired") from error
    except jwt.PyJWTError as error:
        raise Unauthorized("the token is not valid") from error
    user_id, device_id = claims.get("sub"), claims.get("device", DEFAULT_DEVICE)
    if not isinstance(user_id, str) or not user_id or not isinstance(device_id, str):
        raise Unauthorized("the token's subject or device is not valid")
    if len(user_id) > 128 or len(device_id) > 128:
        raise Unauthorized("the token's subject or device is too long")
    if not (user_id.isprintable() and device_id.isprintable()):
        # Ids become parts of storage keys: control characters would let keys collide.
        raise Unauthorized("the token's subject or device has unprintable characters")
    raw_roles = claims.get("roles", [])
    roles = (
        tuple(role for role in raw_roles if isinstance(role, str))
        if isinstance(raw_roles, list)
        else ()
    )
    return Identity(user_id=user_id, device_id=device_id or DEFAULT_DEVICE, roles=roles)


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header ("" when absent or not bearer)."""
    if not authorization:
        return ""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def check_internal_token(presented: str | None, expected: str) -> None:
    if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized("internal endpoints need the internal token", code="internal_only")
