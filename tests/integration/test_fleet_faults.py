"""Fleet-wide fault injection (issue 12): kill -9 mid-upload, mid-proof, mid-stream, a frozen AWS.

Each test runs a small fleet of its own (`devstack.fleet.start_fleet`), injects one kind of
fault while clients are busy, and checks, once the fault is over, that nothing the clients were
told succeeded was lost, nothing is stuck in a non-terminal state and nothing happened twice.
Clients retry as the contract tells them to (same `client_msg_id`; a new slot when a challenge
is gone). The seconds from each restart (or resume) to the first success after it are printed
(`pytest -rA` shows them) and collected in `RECOVERY`.

The Message Service's kill test is `test_message_crash.py`; the worker's are the worker's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from devstack.fleet import LocalFleet, start_fleet
from devstack.ports import free_port
from devstack.processes import ServiceProcess, available_services
from tests.integration.media_client import make_jpeg, put_to_slot, slot_request
from tests.integration.ws_client import ws_url
from tests.waiting import eventually, scaled

SERVICES = available_services()
FAULT_SETTINGS = {
    "AWS_MAX_ATTEMPTS": "2",
    "QUEUE_WAIT_SECONDS": "1",
    "VISIBILITY_TIMEOUT_SECONDS": "10",
    "PROCESS_POOL_SIZE": "1",
    "LOG_JSON": "true",
    # These tests measure faults, not the per-user budgets.
    "SEND_RATE_PER_SECOND": "10000",
    "SEND_BURST": "10000",
    "SLOT_RATE_PER_MINUTE": "10000",
    "MAX_PENDING_UPLOADS": "1000",
    # A challenge a crashed proof took settles `expired` soon after its (short) expiry.
    "PROOF_TTL_SECONDS": "10",
    "EXPIRY_GRACE_SECONDS": "0",
    "FANOUT_REPAIR_INTERVAL_SECONDS": "1",
    "FANOUT_REPAIR_GRACE_SECONDS": "1",
}
RETRY_SECONDS = 0.05
RECOVERY: dict[str, float] = {}  # fault → seconds from restart/resume to the first success


def _report(fault: str, seconds: float, detail: str, boot: float | None = None) -> None:
    RECOVERY[fault] = seconds
    booted = f" (the process answered /healthz after {boot:.2f}s)" if boot is not None else ""
    print(f"\n[fault] {fault}: first success {seconds:.2f}s after restart/resume{booted}; {detail}")
    sys.stdout.flush()


@asynccontextmanager
async def _fleet(log_dir: Path, services: list[str]) -> AsyncIterator[LocalFleet]:
    async with start_fleet(
        log_dir=log_dir,
        prefix=f"flt{secrets.token_hex(4)}",
        extra_env=FAULT_SETTINGS,
        services=services,
    ) as fleet:
        yield fleet


class Restarts:
    """kill -9 one service of `fleet` and start it again on its port; when each came back."""

    def __init__(self, fleet: LocalFleet, name: str) -> None:
        self.fleet = fleet
        self.name = name
        self.at: list[float] = []  # monotonic time of each relaunch
        self.first_success: list[float] = []  # seconds from each relaunch to a success
        self.boot: list[float] = []  # seconds from each relaunch to /healthz 200

    async def kill_and_restart(self) -> None:
        killed = self.fleet.processes[self.name]
        assert killed.pid is not None
        os.kill(killed.pid, signal.SIGKILL)
        assert await asyncio.to_thread(killed.stop) == -signal.SIGKILL  # reaped
        process = ServiceProcess(
            killed.package,
            name=f"{self.name}-{len(self.at) + 2}",
            port=self.fleet.ports[self.name],
            env=self.fleet.env,
            log_dir=self.fleet.log_dir,
        )
        self.fleet.processes[self.name] = process
        self.at.append(time.monotonic())
        await asyncio.to_thread(process.start)
        self.boot.append(time.monotonic() - self.at[-1])

    def succeeded(self) -> None:
        """A client operation succeeded: the first one after each restart is its recovery."""
        if len(self.first_success) < len(self.at):
            self.first_success.append(time.monotonic() - self.at[-1])


def _proof(nonce: str, data: bytes, offset: int, length: int) -> str:
    return hashlib.sha256(bytes.fromhex(nonce) + data[offset : offset + length]).hexdigest()


async def _state(
    http: httpx.AsyncClient, fleet: LocalFleet, headers: dict[str, str], m: str
) -> str:
    response = await http.get(f"{fleet.media_url}/v1/media/{m}", headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["state"])


async def _all_in(
    http: httpx.AsyncClient,
    fleet: LocalFleet,
    headers: dict[str, str],
    media_ids: list[str],
    states: set[str],
    within: float,
) -> dict[str, str]:
    async def settled() -> dict[str, str] | None:
        found = {m: await _state(http, fleet, headers, m) for m in media_ids}
        return found if set(found.values()) <= states else None

    return await eventually(settled, f"{len(media_ids)} media in {states}", timeout=within)


# --- 1. the Media Service, mid-upload and mid-proof --------------------------------------------


@pytest.mark.skipif(
    not {"media_service", "transcode_worker"} <= set(SERVICES),
    reason="needs the Media Service and the worker",
)
async def test_media_service_kill_9_mid_upload_and_mid_proof(tmp_path: Path) -> None:
    uploads, proofs, concurrency = 24, 16, 6
    async with (
        _fleet(tmp_path, ["media_service", "transcode_worker"]) as fleet,
        httpx.AsyncClient(timeout=10) as http,
    ):
        alice = fleet.auth(f"alice-{secrets.token_hex(3)}")
        restarts = Restarts(fleet, "media_service")
        base = secrets.randbelow(10**9)
        photos = [make_jpeg(96, 64, seed=base + i) for i in range(uploads)]
        slots_url = f"{fleet.media_url}/v1/media/uploads"

        # Uploads: slot requests in flight when the service dies; each retried until answered.
        stored: dict[int, str] = {}  # upload → the media the client PUT its bytes for
        asked = 0

        async def upload(index: int) -> None:
            nonlocal asked
            while True:
                try:
                    response = await http.post(
                        slots_url, json=slot_request(photos[index]), headers=alice
                    )
                except httpx.TransportError:
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                if response.status_code != 201:
                    assert response.status_code == 503, response.text
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                restarts.succeeded()
                slot = response.json()
                put = await put_to_slot(http, slot["upload"], photos[index])
                assert put.status_code == 200, put.text
                stored[index] = slot["media_id"]
                asked += 1
                return

        killing = asyncio.Lock()
        next_upload = 0

        async def uploader() -> None:
            nonlocal next_upload
            while next_upload < uploads:
                index = next_upload
                next_upload += 1
                await upload(index)
                async with killing:
                    if not restarts.at and asked >= uploads // 3:
                        await restarts.kill_and_restart()

        async with asyncio.timeout(scaled(120)):
            await asyncio.gather(*(uploader() for _ in range(concurrency)))
        assert len(restarts.at) == 1
        states = await _all_in(
            http, fleet, alice, list(stored.values()), {"ready"}, within=scaled(90)
        )
        assert len(set(states)) == uploads  # one media per upload: none lost, none twice

        # Dedup proofs: every challenge is out, every proof in flight when the service dies.
        original = photos[0]
        challenges: dict[int, dict[str, Any]] = {}
        known: dict[int, list[str]] = {i: [] for i in range(proofs)}  # every media each one got

        async def new_challenge(index: int) -> dict[str, Any]:
            while True:
                try:
                    response = await http.post(
                        slots_url, json=slot_request(original), headers=alice
                    )
                except httpx.TransportError:
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                if response.status_code == 503:
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                assert response.status_code == 200, response.text
                slot: dict[str, Any] = response.json()
                known[index].append(slot["media_id"])
                return slot

        for index in range(proofs):
            challenges[index] = await new_challenge(index)
        proved: dict[int, str] = {}
        fresh_challenges = 0
        spent_by_crash = 0

        async def prove(index: int) -> None:
            nonlocal fresh_challenges, spent_by_crash
            slot = challenges[index]
            while True:
                dedup = slot["dedup"]
                body = {"proof": _proof(dedup["nonce"], original, dedup["offset"], dedup["length"])}
                try:
                    response = await http.post(
                        f"{fleet.media_url}/v1/media/{slot['media_id']}/proof",
                        json=body,
                        headers=alice,
                    )
                except httpx.TransportError:
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                if response.status_code == 503:
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                spent = response.status_code == 409
                if spent:
                    # The challenge is spent (one try): by a proof that landed before the crash
                    # and lost its answer (the media is settled: done), or by one the crash cut
                    # short (awaiting_proof until it expires): then a fresh challenge.
                    assert response.json()["error"]["code"] == "invalid_state", response.text
                    if await _state(http, fleet, alice, slot["media_id"]) == "ready":
                        break
                if spent or response.status_code == 403:
                    # Spent, or expired while the service was down: a fresh challenge.
                    if not spent:
                        assert response.json()["error"]["code"] == "challenge_expired"
                    fresh_challenges += 1
                    spent_by_crash += spent
                    slot = await new_challenge(index)
                    continue
                assert response.status_code == 200, response.text
                break
            restarts.succeeded()
            proved[index] = slot["media_id"]
            first_proof.set()

        first_proof = asyncio.Event()

        async def kill_mid_proof() -> None:
            await first_proof.wait()  # one is answered: the others are on their way
            await restarts.kill_and_restart()

        async with asyncio.timeout(scaled(120)):
            await asyncio.gather(*(prove(i) for i in range(proofs)), kill_mid_proof())
        assert len(restarts.at) == 2
        assert set(proved) == set(range(proofs))
        await _all_in(http, fleet, alice, list(proved.values()), {"ready"}, within=scaled(30))
        # Nothing stuck: every media a challenge was handed out for settles (ready, or
        # expired for a challenge a crashed proof took), and only one per client is ready.
        everything = [m for ids in known.values() for m in ids]
        final = await _all_in(
            http, fleet, alice, everything, {"ready", "expired"}, within=scaled(60)
        )
        for index, ids in known.items():
            assert [m for m in ids if final[m] == "ready"] == [proved[index]], index

    _report(
        "media_service kill -9 mid-upload",
        restarts.first_success[0],
        f"{uploads} uploads, 0 lost, 0 stuck, 0 duplicated",
        restarts.boot[0],
    )
    _report(
        "media_service kill -9 mid-proof",
        restarts.first_success[1],
        f"{proofs} proofs, {fresh_challenges} retried with a fresh challenge "
        f"({spent_by_crash} spent by a proof the kill cut short, the rest expired meanwhile), "
        f"{sum(1 for s in final.values() if s == 'expired')} taken challenges expired; "
        "0 lost, 0 stuck, 0 duplicated",
        restarts.boot[1],
    )


# --- 2. a gateway, mid-stream -----------------------------------------------------------------


@pytest.mark.skipif(
    not {"message_service", "gateway"} <= set(SERVICES),
    reason="needs the Message Service and the gateway",
)
async def test_gateway_kill_9_mid_stream_loses_and_repeats_nothing(tmp_path: Path) -> None:
    sends, concurrency = 120, 4
    async with (
        _fleet(tmp_path, ["message_service", "gateway"]) as fleet,
        httpx.AsyncClient(timeout=10) as http,
    ):
        alice, bob = f"alice-{secrets.token_hex(3)}", f"bob-{secrets.token_hex(3)}"
        created = await http.post(
            f"{fleet.url('message_service')}/v1/conversations",
            json={"members": [bob]},
            headers=fleet.auth(alice),
        )
        assert created.status_code == 201, created.text
        conversation_id = created.json()["conversation_id"]
        restarts = Restarts(fleet, "gateway")
        received: dict[str, int] = {}  # message_id → seq, deduplicated
        frames = 0
        connections = 0
        kill_at = sends // 3
        sent: dict[str, str] = {}  # client_msg_id → message_id

        async def bob_listens() -> None:
            nonlocal frames, connections
            headers = fleet.auth(bob)
            while len(received) < sends:
                try:
                    async with connect(
                        ws_url(fleet.url("gateway")), additional_headers=headers, open_timeout=10
                    ) as ws:
                        connections += 1
                        await _read_messages(ws)
                except (ConnectionClosed, InvalidHandshake, InvalidStatus, OSError, TimeoutError):
                    await asyncio.sleep(RETRY_SECONDS)

        async def _read_messages(ws: ClientConnection) -> None:
            nonlocal frames
            while len(received) < sends:
                frame = json.loads(await ws.recv())
                if frame.get("type") != "message":
                    continue
                message = frame["message"]
                frames += 1
                if restarts.at and connections > 1:
                    restarts.succeeded()
                received[message["message_id"]] = message["seq"]
                await ws.send(
                    json.dumps({"type": "received", "message_ids": [message["message_id"]]})
                )
                if not restarts.at and len(received) >= kill_at:
                    # Spawned: the kill closes this very connection.
                    asyncio.get_running_loop().create_task(killer())

        killer_started = asyncio.Event()

        async def killer() -> None:
            if killer_started.is_set():
                return
            killer_started.set()
            await restarts.kill_and_restart()

        next_send = 0

        async def alice_sends() -> None:
            nonlocal next_send
            while next_send < sends:
                index = next_send
                next_send += 1
                body = {"client_msg_id": f"s-{index}", "text": f"#{index}"}
                while True:
                    try:
                        response = await http.post(
                            f"{fleet.url('message_service')}/v1/conversations/"
                            f"{conversation_id}/messages",
                            json=body,
                            headers=fleet.auth(alice),
                        )
                    except httpx.TransportError:
                        response = None
                    if response is not None and response.status_code in (200, 201):
                        sent[body["client_msg_id"]] = response.json()["message_id"]
                        break
                    await asyncio.sleep(RETRY_SECONDS)
                # A steady stream, not a burst: the kill lands with messages still to come.
                await asyncio.sleep(0.02)

        listener = asyncio.create_task(bob_listens())
        # Bob's device is registered (connected) before the first send.
        await eventually(lambda: connections >= 1, "bob connected", timeout=scaled(20))
        async with asyncio.timeout(scaled(120)):
            await asyncio.gather(*(alice_sends() for _ in range(concurrency)))
            await listener
        assert len(restarts.at) == 1, "the gateway was never killed"
        assert set(received) == set(sent.values())  # 0 lost
        assert sorted(received.values()) == list(range(1, sends + 1))  # 0 twice, no seq gap
        assert connections >= 2
    _report(
        "gateway kill -9 mid-stream",
        restarts.first_success[0],
        f"{sends} messages, {frames} frames ({frames - sends} redelivered, deduplicated by "
        "message_id), 0 lost, 0 duplicated, seq gap-free",
        restarts.boot[0],
    )


# --- 3. the emulator frozen for 10 s ----------------------------------------------------------


@pytest.mark.skipif(
    not {"media_service", "message_service", "transcode_worker"} <= set(SERVICES),
    reason="needs the media, message and worker services",
)
async def test_a_10_second_aws_freeze_loses_and_sticks_nothing(tmp_path: Path) -> None:
    sends, uploads, freeze = 60, 8, 10.0
    services = ["media_service", "message_service", "transcode_worker"]
    async with _fleet(tmp_path, services) as fleet, httpx.AsyncClient(timeout=30) as http:
        alice, bob = f"alice-{secrets.token_hex(3)}", f"bob-{secrets.token_hex(3)}"
        messages_url = fleet.url("message_service")
        created = await http.post(
            f"{messages_url}/v1/conversations", json={"members": [bob]}, headers=fleet.auth(alice)
        )
        assert created.status_code == 201, created.text
        conversation_id = created.json()["conversation_id"]
        pid = fleet.emulator_pid
        assert pid is not None
        resumed: list[float] = []
        readyz_after: list[float] = []  # seconds from the resume to every /readyz 200
        first_success: list[float] = []
        done = 0
        photos = [make_jpeg(96, 64, seed=secrets.randbelow(10**9)) for _ in range(uploads)]
        stored: list[str] = []

        def succeeded() -> None:
            nonlocal done
            done += 1
            if resumed and not first_success:
                first_success.append(time.monotonic() - resumed[0])

        async def send(index: int) -> None:
            body = {"client_msg_id": f"f-{index}", "text": f"#{index}"}
            while True:
                try:
                    response = await http.post(
                        f"{messages_url}/v1/conversations/{conversation_id}/messages",
                        json=body,
                        headers=fleet.auth(alice),
                    )
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code in (200, 201):
                    succeeded()
                    return
                await asyncio.sleep(RETRY_SECONDS)

        async def upload(index: int) -> None:
            while True:
                try:
                    response = await http.post(
                        f"{fleet.media_url}/v1/media/uploads",
                        json=slot_request(photos[index]),
                        headers=fleet.auth(alice),
                    )
                    if response.status_code == 201:
                        put = await put_to_slot(http, response.json()["upload"], photos[index])
                        if put.status_code == 200:
                            stored.append(response.json()["media_id"])
                            succeeded()
                            return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(RETRY_SECONDS)

        async def sender() -> None:
            for index in range(sends):
                await send(index)  # in order: the freeze lands mid-stream
                await asyncio.sleep(0.05)

        async def uploader() -> None:
            for index in range(uploads):
                await upload(index)
                await asyncio.sleep(0.2)

        async def freezer() -> None:
            await eventually(lambda: done >= 5, "some traffic", timeout=scaled(30))
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(freeze)  # the fault itself lasts 10 s (not a wait)
            finally:
                os.kill(pid, signal.SIGCONT)
                resumed.append(time.monotonic())
            await eventually(ready_again, "every /readyz 200", timeout=scaled(30))
            readyz_after.append(time.monotonic() - resumed[0])

        async def ready_again() -> bool:
            codes = [
                (await http.get(f"{fleet.url(name)}/readyz")).status_code
                for name in fleet.processes
            ]
            return set(codes) == {200}

        async with asyncio.timeout(scaled(150)):
            await asyncio.gather(sender(), uploader(), freezer())

        history: list[dict[str, Any]] = []
        after = 0
        while True:
            page = await http.get(
                f"{messages_url}/v1/conversations/{conversation_id}/messages",
                params={"after": after, "limit": 100},
                headers=fleet.auth(alice),
            )
            assert page.status_code == 200, page.text
            batch = page.json()["messages"]
            if not batch:
                break
            history.extend(batch)
            after = int(batch[-1]["seq"])
        assert [m["seq"] for m in history] == list(range(1, sends + 1))
        assert sorted(m["client_msg_id"] for m in history) == sorted(f"f-{i}" for i in range(sends))
        states = await _all_in(http, fleet, fleet.auth(alice), stored, {"ready"}, within=scaled(90))
        assert len(states) == uploads
        assert fleet.exited() == {}
    _report(
        "emulator frozen 10 s",
        first_success[0] if first_success else 0.0,
        f"{sends} sends + {uploads} uploads, 0 lost, 0 stuck, 0 duplicated, seq gap-free; "
        f"every /readyz 200 again {readyz_after[0]:.2f}s after the resume",
    )


# --- 5. `make run`, SIGTERM twice -------------------------------------------------------------


async def test_make_run_stops_without_a_traceback_on_two_quick_sigterms(tmp_path: Path) -> None:
    from tests.integration.test_devstack import _free_port_offset, _read_until

    env = {**os.environ, "AUTH_JWT_SECRET": "t" * 40, "RESOURCE_PREFIX": "twice"}
    runner = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devstack.run",
        "--emulator-port",
        str(free_port()),
        "--port-offset",
        str(_free_port_offset()),
        "--log-dir",
        str(tmp_path / "logs"),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    assert runner.stdout is not None
    seen: list[str] = []
    try:
        await asyncio.wait_for(
            _read_until(runner.stdout, "Ctrl-C stops everything.", seen), scaled(90)
        )
        # Twice at once (the kernel may fold these into one), then once more while it stops.
        os.killpg(runner.pid, signal.SIGTERM)
        os.killpg(runner.pid, signal.SIGTERM)
        await asyncio.wait_for(_read_until(runner.stdout, "stopping...", seen), scaled(30))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGTERM)
        rest, _ = await asyncio.wait_for(runner.communicate(), scaled(60))
    finally:
        if runner.returncode is None:
            runner.kill()
            await runner.communicate()
    output = "".join(seen) + rest.decode(errors="replace")
    assert runner.returncode == 0, output
    assert "Traceback" not in output, output
    assert "stopped." in output
