"""Identity: HS256 dev JWTs, RS256/ES256 JWTs of an identity provider (JWKS), the internal token.

Every token carries `sub`, `exp` and optionally `device`; roles come from a configurable claim
(`roles` by default; a dotted path such as `realm_access.roles` for Keycloak).
"""

from __future__ import annotations

import asyncio
import hmac
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning
from pydantic import BaseModel, ConfigDict

from shared.errors import DependencyUnavailable, Unauthorized
from shared.settings import DEV_JWT_SECRET

ALGORITHM = "HS256"
# What an identity provider may sign with. Never "none", never HS* against a public key.
PROVIDER_ALGORITHMS = ("RS256", "ES256")
DEFAULT_ROLES_CLAIM = "roles"
DEFAULT_DEVICE = "default"
INTERNAL_TOKEN_HEADER = "X-Internal-Token"
ADMIN_ROLE = "admin"


class Identity(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    device_id: str = DEFAULT_DEVICE
    roles: frozenset[str] = frozenset()
    # The token's `exp` (Unix seconds): a WebSocket session ends then unless re-authenticated.
    expires_at: int | None = None

    def has_role(self, role: str) -> bool:
        return role in self.roles

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
    claims: dict[str, Any] = {"sub": user_id, "device": device_id, "exp": expires}
    if roles:
        claims[DEFAULT_ROLES_CLAIM] = list(roles)
    with _quiet_about_the_dev_secret(secret):
        return jwt.encode(claims, secret, ALGORITHM)


def verify_token(token: str, secret: str, *, roles_claim: str = DEFAULT_ROLES_CLAIM) -> Identity:
    """The identity in an HS256 token; `Unauthorized` for a missing, expired, forged, odd one."""
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
    return identity_from_claims(claims, roles_claim)


def identity_from_claims(claims: Mapping[str, Any], roles_claim: str) -> Identity:
    """The principal of verified claims; `Unauthorized` when its ids could not be used safely."""
    user_id, device_id = claims.get("sub"), claims.get("device", DEFAULT_DEVICE)
    if not isinstance(user_id, str) or not user_id or not isinstance(device_id, str):
        raise Unauthorized("the token's subject or device is not valid")
    if len(user_id) > 128 or len(device_id) > 128:
        raise Unauthorized("the token's subject or device is too long")
    if not (user_id.isprintable() and device_id.isprintable()):
        # Ids become parts of storage keys: control characters would let keys collide.
        raise Unauthorized("the token's subject or device has unprintable characters")
    return Identity(
        user_id=user_id,
        device_id=device_id or DEFAULT_DEVICE,
        roles=roles_from_claims(claims, roles_claim),
        expires_at=_expiry(claims),
    )


def _expiry(claims: Mapping[str, Any]) -> int | None:
    value = claims.get("exp")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def roles_from_claims(claims: Mapping[str, Any], roles_claim: str) -> frozenset[str]:
    """Roles under `roles_claim`: a list of strings or one space-separated string. A dotted
    name walks nested objects (Keycloak's `realm_access.roles`) unless the claim itself has a
    dot in its name. Anything else gives no roles (never an error: roles only ever add rights).
    """
    value: Any = claims.get(roles_claim)
    if value is None and "." in roles_claim:
        value = claims
        for step in roles_claim.split("."):
            value = value.get(step) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list):
        return frozenset()
    return frozenset(role for role in value if isinstance(role, str) and 0 < len(role) <= 64)


class TokenVerifier:
    """Checks bearer tokens: HS256 with the local secret, and, when `jwks_url` is set,
    RS256/ES256 tokens of an identity provider, with issuer and audience when configured.

    Signing keys come from PyJWT's `PyJWKClient`: cached, refetched when a token names an
    unknown `kid` (key rotation; at most once per `refresh_cooldown_seconds`). It fetches with
    blocking urllib, so every call to it runs in a worker thread, never on the event loop.
    Build one per app (it holds the key cache); building does no I/O.
    """

    def __init__(
        self,
        secret: str,
        *,
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        roles_claim: str = DEFAULT_ROLES_CLAIM,
        jwks_cache_seconds: float = 300,
        refresh_cooldown_seconds: float = 30,
        fetch_timeout_seconds: float = 5,
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._roles_claim = roles_claim
        self._jwks = (
            jwt.PyJWKClient(
                jwks_url,
                cache_keys=True,
                lifespan=jwks_cache_seconds,
                timeout=fetch_timeout_seconds,
                cooldown_duration=refresh_cooldown_seconds,
            )
            if jwks_url
            else None
        )

    async def verify(self, token: str) -> Identity:
        if not token:
            raise Unauthorized("a bearer token is required")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError as error:
            raise Unauthorized("the token is not valid") from error
        if algorithm == ALGORITHM:
            return verify_token(token, self._secret, roles_claim=self._roles_claim)
        if algorithm not in PROVIDER_ALGORITHMS or self._jwks is None:
            raise Unauthorized("the token is not valid")
        key = await asyncio.to_thread(self._signing_key, token)
        options: dict[str, Any] = {"require": ["sub", "exp"], "verify_aud": bool(self._audience)}
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.ExpiredSignatureError as error:
            raise Unauthorized("the token has expired", code="token_expired") from error
        except jwt.PyJWTError as error:
            raise Unauthorized("the token is not valid") from error
        return identity_from_claims(claims, self._roles_claim)

    def _signing_key(self, token: str) -> Any:
        """The provider's key for `token` (blocking: runs in a thread)."""
        assert self._jwks is not None
        try:
            return self._jwks.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as error:
            raise DependencyUnavailable(
                "the identity provider's keys cannot be fetched; retry shortly",
                code="identity_provider_unavailable",
                headers={"Retry-After": "2"},
            ) from error
        except jwt.PyJWTError as error:
            # Unknown kid after a refresh, a malformed header, a key set without that key...
            raise Unauthorized("the token is not valid") from error


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header ("" when absent or not bearer)."""
    if not authorization:
        return ""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def check_internal_token(presented: str | None, expected: str) -> None:
    if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized("internal endpoints need the internal token", code="internal_only")
