"""Tokens of an identity provider (RS256/ES256 against a JWKS), beside the HS256 dev tokens.

The key set is served over real HTTP by a server in the test (tests/identity_provider.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import jwt
import pytest

from shared.auth import TokenVerifier, issue_token, roles_from_claims
from shared.errors import DependencyUnavailable, Unauthorized
from shared.settings import DEV_JWT_SECRET
from tests.identity_provider import AUDIENCE, ISSUER, JwksServer, SigningKey, serve_jwks

RSA_KEY = SigningKey.rsa("rsa-1")
EC_KEY = SigningKey.ec("ec-1")


@pytest.fixture
def idp() -> Iterator[JwksServer]:
    with serve_jwks(RSA_KEY, EC_KEY) as server:
        yield server


def verifier(idp: JwksServer, **overrides: object) -> TokenVerifier:
    options: dict[str, object] = {
        "jwks_url": idp.url,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "refresh_cooldown_seconds": 0,
    }
    options.update(overrides)
    return TokenVerifier(DEV_JWT_SECRET, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [RSA_KEY, EC_KEY], ids=["RS256", "ES256"])
async def test_provider_tokens_are_accepted_with_their_roles(
    idp: JwksServer, key: SigningKey
) -> None:
    identity = await verifier(idp).verify(key.token("alice", device="phone", roles=["admin"]))
    assert identity.user_id == "alice"
    assert identity.device_id == "phone"
    assert identity.has_role("admin")


async def test_keys_are_cached_and_fetched_again_for_a_new_kid(idp: JwksServer) -> None:
    checker = verifier(idp)
    await checker.verify(RSA_KEY.token("alice"))
    await checker.verify(EC_KEY.token("bob"))
    assert idp.fetches == 1
    rotated = SigningKey.rsa("rsa-2")
    idp.keys = [rotated, EC_KEY]  # the provider rotates its RSA key
    identity = await checker.verify(rotated.token("carol"))
    assert identity.user_id == "carol"
    assert idp.fetches == 2


async def test_an_unknown_kid_is_refused(idp: JwksServer) -> None:
    stranger = SigningKey.rsa("not-published")
    with pytest.raises(Unauthorized):
        await verifier(idp).verify(stranger.token("mallory"))


async def test_a_token_signed_by_another_key_under_a_known_kid_is_refused(
    idp: JwksServer,
) -> None:
    forged = SigningKey("rsa-1", "RS256", SigningKey.rsa("x").private)
    with pytest.raises(Unauthorized):
        await verifier(idp).verify(forged.token("mallory"))


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"issuer": "https://other.example/"}, "unauthorized"),
        ({"issuer": None}, "unauthorized"),
        ({"audience": "someone-else"}, "unauthorized"),
        ({"audience": None}, "unauthorized"),
        ({"ttl": timedelta(seconds=-60)}, "token_expired"),
    ],
    ids=["wrong-issuer", "no-issuer", "wrong-audience", "no-audience", "expired"],
)
async def test_issuer_audience_and_expiry_are_checked(
    idp: JwksServer, claims: dict[str, object], code: str
) -> None:
    with pytest.raises(Unauthorized) as refused:
        await verifier(idp).verify(RSA_KEY.token("alice", **claims))  # type: ignore[arg-type]
    assert refused.value.error_code == code


async def test_issuer_and_audience_are_optional_settings(idp: JwksServer) -> None:
    checker = verifier(idp, issuer=None, audience=None)
    identity = await checker.verify(RSA_KEY.token("alice", issuer=None, audience=None))
    assert identity.user_id == "alice"


async def test_dev_tokens_still_work_and_provider_tokens_need_a_jwks_url(
    idp: JwksServer,
) -> None:
    checker = verifier(idp)
    identity = await checker.verify(issue_token("dave", DEV_JWT_SECRET, roles=("admin",)))
    assert identity.user_id == "dave"
    assert identity.roles == frozenset({"admin"})
    with pytest.raises(Unauthorized):
        await TokenVerifier(DEV_JWT_SECRET).verify(RSA_KEY.token("alice"))


async def test_algorithm_confusion_and_none_are_refused(idp: JwksServer) -> None:
    # HS256 is only ever checked against the local secret, never against a provider's key:
    # an HMAC made with public key material (the classic confusion attack) fails.
    public_material = RSA_KEY.public_jwk()["n"]
    confused = jwt.encode(
        {"sub": "mallory", "exp": 4102444800, "iss": ISSUER, "aud": AUDIENCE},
        public_material,
        "HS256",
        headers={"kid": RSA_KEY.kid},
    )
    unsigned = jwt.encode({"sub": "mallory", "exp": 4102444800}, "", "none")
    for token in (confused, unsigned, "not-a-jwt", ""):
        with pytest.raises(Unauthorized):
            await verifier(idp).verify(token)


async def test_an_unreachable_key_set_is_a_dependency_failure() -> None:
    with serve_jwks() as gone:
        url = gone.url  # the server stops at the end of this block: nothing listens there
    checker = TokenVerifier(DEV_JWT_SECRET, jwks_url=url, fetch_timeout_seconds=2)
    with pytest.raises(DependencyUnavailable):
        await checker.verify(RSA_KEY.token("alice"))


@pytest.mark.parametrize(
    ("claim", "claims", "roles"),
    [
        ("roles", {"roles": ["admin", "ops"]}, {"admin", "ops"}),
        ("roles", {"roles": "admin ops"}, {"admin", "ops"}),
        ("roles", {}, set()),
        ("roles", {"roles": 7}, set()),
        ("cognito:groups", {"cognito:groups": ["admin"]}, {"admin"}),
        ("realm_access.roles", {"realm_access": {"roles": ["admin"]}}, {"admin"}),
        ("realm_access.roles", {"realm_access": ["admin"]}, set()),
    ],
)
def test_roles_claim_shapes(claim: str, claims: dict[str, object], roles: set[str]) -> None:
    assert roles_from_claims(claims, claim) == roles
