"""A derivation lane's handler: one `DeriveJob` in, the media derived and settled.

Crash safety lives here. Before a run starts, a conditional write counts it on the media
(`derive_runs`); a run that ends in its own process (done, or failed with an error) takes its
count back. What is left counted is runs that died with their process: the worker killed, an
OOM kill, or a decoder that broke its pool process even when it ran alone (`JobCrashed`; see
`DerivingProcessor._derive` for how bystanders of a broken pool are told from the culprit).
A media with `MAX_JOB_CRASHES` such runs fails with `processing_failed` instead of running again.
While a run lasts, the media's `watch_at` moves on, so the reconciler leaves it alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from shared.media_records import MediaRecords, StaleTransition
from shared.models import MediaState
from shared.sqs_consumer import PoisonMessage, QueueMessage
from transcode_worker.commit import CommitStep
from transcode_worker.lanes import parse_derive_job
from transcode_worker.pipeline import JobCrashed
from transcode_worker.settle import MediaSettler

log = logging.getLogger("ferry.worker.derive_lane")


class DeriveHandler:
    def __init__(
        self,
        *,
        commit: CommitStep,
        store: MediaRecords,
        settler: MediaSettler,
        max_job_crashes: int,
        watch_every_seconds: float,
    ) -> None:
        self._commit = commit
        self._store = store
        self._settler = settler
        self._max_job_crashes = max_job_crashes
        self._watch_every = watch_every_seconds

    async def handle(self, message: QueueMessage) -> str:
        job = parse_derive_job(message.body)
        if job is None:
            raise PoisonMessage("the body is not a derive job")
        media_id = job.media_id
        try:
            runs = await self._store.start_run(media_id)
        except StaleTransition:
            # Settled (or gone) already: the commit step's usual answers for a repeat.
            return await self._commit.derive(job.created(), redelivered=message.redelivered)
        context = {"media_id": media_id, "derive_runs": runs}
        if runs > self._max_job_crashes:
            # Its last MAX_JOB_CRASHES runs all died with their process: this is the poison.
            log.error("derivation crashed its process too often", extra=context)
            await self._settler.fail(media_id, "crash_limit")
            return "ok"
        watching = asyncio.create_task(self._keep_watch(media_id), name="derive-watch")
        try:
            outcome = await self._commit.derive(job.created(), redelivered=message.redelivered)
        except JobCrashed:
            # The run stays counted: it died with its process, alone.
            log.error("derivation killed its process", extra=context)
            if runs >= self._max_job_crashes:
                await self._settler.fail(media_id, "crash_limit")
                return "ok"
            raise
        except BaseException:
            # Ended here (an error, or a stop): not a crash, so it does not count.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._store.end_run(media_id))
            raise
        finally:
            watching.cancel()
            await asyncio.wait({watching})
        return outcome

    async def _keep_watch(self, media_id: str) -> None:
        while True:
            await asyncio.sleep(self._watch_every)
            try:
                await self._store.touch_watch(media_id, MediaState.PROCESSING)
            except Exception:
                log.warning("could not refresh the watch of a running job", exc_info=True)

    async def give_up(self, message: QueueMessage) -> None:
        job = parse_derive_job(message.body)
        if job is not None:
            await self._settler.fail(job.media_id, "last_receive")
