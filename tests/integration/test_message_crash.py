"""kill -9 of the Message Service mid-send (issue 12): nothing lost, nothing twice, no seq gap.

A small fleet of its own (the emulator and the Message Service). 300 HTTP sends, 8 at a time,
into one conversation; the service is killed with SIGKILL after 20 %, 50 % and 80 % of them
were answered, and started again on the same port. Clients retry every failure with the same
`client_msg_id`, as the contract tells them to. Afterwards: each send stored exactly once,
`seq` runs 1..300 with no gap, and every message is pending for the recipient's device. The
time from each restart to the first success of the sends it interrupted is printed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.fleet import start_fleet
from devstack.processes import ServiceProcess, available_services
from tests.waiting import eventually, scaled

SENDS = 300
CONCURRENCY = 8
KILL_AT = (0.2, 0.5, 0.8)
CRASH_SETTINGS = {
    "AWS_MAX_ATTEMPTS": "2",
    "QUEUE_WAIT_SECONDS": "1",
    "LOG_JSON": "true",
    # This test measures crashes, not the per-user send budget.
    "SEND_RATE_PER_SECOND": "10000",
    "SEND_BURST": "10000",
    "FANOUT_REPAIR_INTERVAL_SECONDS": "1",
    "FANOUT_REPAIR_GRACE_SECONDS": "1",
}


@pytest.mark.skipif(
    "message_service" not in available_services(), reason="needs the Message Service"
)
async def test_kill_9_mid_send_loses_nothing_duplicates_nothing_and_leaves_no_gap(
    tmp_path: Path,
) -> None:
    async with start_fleet(
        log_dir=tmp_path,
        prefix=f"crash{secrets.token_hex(4)}",
        extra_env=CRASH_SETTINGS,
        services=["message_service"],
    ) as fleet:
        url = fleet.url("message_service")
        alice, bob = "alice-crash", "bob-crash"
        internal = {"X-Internal-Token": fleet.internal_token}
        async with httpx.AsyncClient(timeout=10) as http:
            # Bob's phone is known before the first send, so every message is pending for it.
            known = await http.get(f"{url}/internal/devices/{bob}/phone/pending", headers=internal)
            assert known.status_code == 200, known.text
            created = await http.post(
                f"{url}/v1/conversations", json={"members": [bob]}, headers=fleet.auth(alice)
            )
            assert created.status_code == 201, created.text
            conversation_id = created.json()["conversation_id"]

            answered = 0
            next_index = 0
            interrupted: dict[int, float] = {}  # send → when it first failed
            recovered: list[float] = []  # seconds from a restart to an interrupted send's success
            restarts: list[float] = []
            statuses: dict[int, int] = {}
            kills_due = [int(SENDS * at) for at in KILL_AT]
            killing = asyncio.Lock()

            async def one_send(index: int) -> None:
                nonlocal answered
                body = {"client_msg_id": f"crash-{index}", "text": f"#{index}"}
                while True:
                    try:
                        response = await http.post(
                            f"{url}/v1/conversations/{conversation_id}/messages",
                            json=body,
                            headers=fleet.auth(alice),
                        )
                    except httpx.TransportError:
                        response = None
                    if response is not None and response.status_code in (200, 201):
                        statuses[index] = response.status_code
                        if index in interrupted and restarts:
                            since = max(restarts[-1], interrupted[index])
                            recovered.append(time.monotonic() - since)
                        answered += 1
                        return
                    interrupted.setdefault(index, time.monotonic())
                    await asyncio.sleep(0.05)

            async def crash_and_restart() -> None:
                killed = fleet.processes["message_service"]
                assert killed.pid is not None
                os.kill(killed.pid, signal.SIGKILL)
                assert await asyncio.to_thread(killed.stop) == -signal.SIGKILL  # reaped
                number = len(restarts) + 2
                process = ServiceProcess(
                    "message_service",
                    name=f"message_service-{number}",
                    port=fleet.ports["message_service"],
                    env=fleet.env,
                    log_dir=tmp_path,
                )
                fleet.processes["message_service"] = process
                await asyncio.to_thread(process.start)
                restarts.append(time.monotonic())

            async def client() -> None:
                nonlocal next_index
                while next_index < SENDS:
                    index = next_index
                    next_index += 1
                    await one_send(index)
                    async with killing:
                        if kills_due and answered >= kills_due[0]:
                            kills_due.pop(0)
                            await crash_and_restart()

            async with asyncio.timeout(scaled(240)):
                await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
            assert len(restarts) == len(KILL_AT)

            history: list[dict[str, Any]] = []
            after = 0
            while True:
                page = await http.get(
                    f"{url}/v1/conversations/{conversation_id}/messages",
                    params={"after": after, "limit": 100},
                    headers=fleet.auth(alice),
                )
                assert page.status_code == 200, page.text
                batch = page.json()["messages"]
                if not batch:
                    break
                history.extend(batch)
                after = int(batch[-1]["seq"])

            seqs = [m["seq"] for m in history]
            client_ids = [m["client_msg_id"] for m in history]
            assert seqs == list(range(1, SENDS + 1)), "seq has a gap or a repeat"
            assert sorted(client_ids) == sorted(f"crash-{i}" for i in range(SENDS))

            async def all_pending() -> set[str] | None:
                response = await http.get(
                    f"{url}/internal/devices/{bob}/phone/pending", headers=internal
                )
                ids = {m["message_id"] for m in response.json()["messages"]}
                return ids if len(ids) == SENDS else None

            pending = await eventually(all_pending, timeout=30)
            assert pending == {m["message_id"] for m in history}

        print(
            f"\nMessage Service kill -9 x{len(restarts)} during {SENDS} sends "
            f"({CONCURRENCY} at a time): 0 lost, 0 duplicated, seq 1..{SENDS} gap-free; "
            f"{len(interrupted)} sends interrupted; restart -> their success: "
            f"max {max(recovered, default=0.0):.2f}s, "
            f"median {sorted(recovered)[len(recovered) // 2] if recovered else 0.0:.2f}s"
        )
        replays = sum(1 for status in statuses.values() if status == 200)
        print(f"replays answered 200 (stored before the kill, answered after): {replays}")
