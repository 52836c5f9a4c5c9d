"""Bring your own identity, end to end: a Message Service process trusting an identity
provider's JWKS (served by this test over real HTTP) accepts its RS256 and ES256 tokens, checks
issuer and audience, follows a key rotation, and still takes the local HS256 dev tokens."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from devstack.fleet import LocalFleet, start_fleet
from tests.identity_provider import AUDIENCE, ISSUER, JwksServer, SigningKey, serve_jwks

RSA_KEY = SigningKey.rsa("rsa-live-1")
EC_KEY = SigningKey.ec("ec-live-1")


@pytest.fixture(scope="module")
def idp() -> Iterator[JwksServer]:
    with serve_jwks(RSA_KEY, EC_KEY) as server:
        yield server


@pytest.fixture(scope="module")
async def trusting_fleet(
    idp: JwksServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LocalFleet]:
    """The Message Service alone (its own emulator), configured for the provider."""
    env = {
        "AUTH_JWKS_URL": idp.url,
        "AUTH_ISSUER": ISSUER,
        "AUTH_AUDIENCE": AUDIENCE,
        "AUTH_JWKS_REFRESH_COOLDOWN_SECONDS": "0",
    }
    async with start_fleet(
        log_dir=Path(tmp_path_factory.mktemp("jwks-fleet")),
        prefix=f"j{secrets.token_hex(4)}",
        extra_env=env,
        services=["message_service"],
    ) as fleet:
        yield fleet
    if fleet.unclean_exits:
        raise AssertionError(fleet.describe_unclean_exits())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_provider_tokens_work_against_a_live_service(
    trusting_fleet: LocalFleet, idp: JwksServer
) -> None:
    base = trusting_fleet.url("message_service")
    alice, bob = f"alice-{secrets.token_hex(4)}", f"bob-{secrets.token_hex(4)}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        created = await http.post(
            "/v1/conversations", json={"members": [bob]}, headers=bearer(RSA_KEY.token(alice))
        )
        assert created.status_code == 201, created.text
        conversation = created.json()["conversation_id"]

        # Bob's token comes from the EC key; the local dev token of the same user works too.
        for token in (EC_KEY.token(bob), trusting_fleet.token(bob)):
            seen = await http.get(f"/v1/conversations/{conversation}", headers=bearer(token))
            assert seen.status_code == 200, seen.text

        for refused in (
            RSA_KEY.token(alice, audience="someone-else"),
            RSA_KEY.token(alice, issuer="https://evil.example/"),
            SigningKey.rsa("unpublished").token(alice),
        ):
            answer = await http.get(f"/v1/conversations/{conversation}", headers=bearer(refused))
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == "unauthorized"

        # The provider rotates: a token under the new kid is accepted once the set is refetched.
        rotated = SigningKey.ec("ec-live-2")
        idp.keys = [RSA_KEY, rotated]
        after = await http.get(
            f"/v1/conversations/{conversation}", headers=bearer(rotated.token(bob))
        )
        assert after.status_code == 200, after.text
