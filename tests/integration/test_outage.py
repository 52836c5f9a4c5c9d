"""An AWS outage, end to end: a small fleet of its own loses its emulator and gets a new one.

While AWS is away every service stays up, says so on `/readyz` (503) and answers clients with
503 `dependency_unavailable`; once AWS is back (a new emulator on the same port, bootstrapped
again, as after a regional blip) every service is ready again by itself and an upload goes
through to `ready`. The session's fleet is left alone: this one has its own emulator, prefix and
processes.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from devstack.fleet import LocalFleet, start_fleet
from devstack.processes import available_services
from gateway.close_codes import CloseCode
from tests.integration.media_client import make_jpeg, slot_request, upload_single, wait_for_state
from tests.integration.ws_client import ws_url
from tests.waiting import eventually

SERVICES = available_services()
# One attempt per AWS call (no botocore retries to sit through), short polls, quick retries.
OUTAGE_SETTINGS = {
    "AWS_MAX_ATTEMPTS": "1",
    "QUEUE_WAIT_SECONDS": "1",
    "RETRY_BASE_SECONDS": "0",
    "VISIBILITY_TIMEOUT_SECONDS": "5",
    "PROCESS_POOL_SIZE": "1",
    "QUEUE_SAMPLE_SECONDS": "1",
    "LOG_JSON": "true",
}
WITHIN = 30.0


@asynccontextmanager
async def small_fleet(log_dir: Path) -> AsyncIterator[LocalFleet]:
    async with start_fleet(
        log_dir=log_dir,
        prefix=f"out{secrets.token_hex(4)}",
        extra_env=OUTAGE_SETTINGS,
        services=SERVICES,
    ) as fleet:
        yield fleet
    bad = fleet.unclean_exits
    assert not bad, f"services did not stop cleanly: {bad}"


async def _readiness(http: httpx.AsyncClient, fleet: LocalFleet) -> dict[str, int]:
    statuses = await asyncio.gather(
        *(http.get(f"{fleet.url(name)}/readyz") for name in fleet.processes)
    )
    return {
        name: response.status_code for name, response in zip(fleet.processes, statuses, strict=True)
    }


def _all(status: int) -> Callable[[dict[str, int]], bool]:
    return lambda statuses: set(statuses.values()) == {status}


@pytest.mark.skipif(
    not {"media_service", "message_service", "transcode_worker"} <= set(SERVICES),
    reason="the outage test needs the media, message and worker services",
)
async def test_services_ride_out_an_aws_outage_and_recover_by_themselves(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    async with small_fleet(tmp_path) as fleet:

        async def readiness_is(status: int) -> dict[str, int] | None:
            statuses = await _readiness(http, fleet)
            return statuses if _all(status)(statuses) else None

        await eventually(lambda: readiness_is(200), timeout=WITHIN)
        alice = fleet.auth(f"alice-{secrets.token_hex(4)}")
        photo = make_jpeg(seed=10**6 + secrets.randbelow(10**9))

        # --- AWS goes away --------------------------------------------------------------------
        await fleet.stop_emulator()
        await eventually(lambda: readiness_is(503), timeout=WITHIN)

        slot = await http.post(
            f"{fleet.url('media_service')}/v1/media/uploads",
            json=slot_request(photo),
            headers=alice,
        )
        assert slot.status_code == 503, slot.text
        assert slot.json()["error"]["code"] == "dependency_unavailable"
        assert slot.headers["Retry-After"]
        conversation = await http.post(
            f"{fleet.url('message_service')}/v1/conversations",
            json={"members": ["bob"]},
            headers=alice,
        )
        assert conversation.status_code == 503, conversation.text
        assert conversation.json()["error"]["code"] == "dependency_unavailable"
        if "gateway" in fleet.processes:
            # The gateway cannot register a connection: "try again later", not a hang.
            async with connect(
                ws_url(fleet.url("gateway")), additional_headers=alice, open_timeout=10
            ) as websocket:
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(WITHIN):
                        await websocket.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == CloseCode.TRY_AGAIN_LATER
        assert fleet.exited() == {}

        # --- AWS comes back: nothing is restarted ---------------------------------------------
        await fleet.start_emulator()
        await eventually(lambda: readiness_is(200), timeout=WITHIN)
        assert fleet.exited() == {}

        async def uploaded() -> str | None:
            try:
                return await upload_single(http, fleet.url("media_service"), alice, photo)
            except AssertionError:
                return None  # a connection the outage broke may cost one 503: clients retry

        media_id = await eventually(uploaded, timeout=10)
        document = await wait_for_state(
            http, fleet.url("media_service"), alice, media_id, within=WITHIN
        )
        assert document["state"] == "ready", document
        assert {v["name"] for v in document["variants"]} >= {"thumb_320"}
        assert fleet.exited() == {}
        for name in fleet.processes:
            # Each one said it was not ready, and then that it was again.
            log = (fleet.log_dir / f"{name}.log").read_text()
            assert '"msg": "not ready: ' in log, name
