"""Legal holds: a flag on the record that every deletion path checks, and S3 Object Lock legal
hold ON for every object version the media's bytes live in (original and derivatives).

Deduplicated media share objects, so a blob remembers which media hold it (`held_by`, a set):
storage holds come off only when the last of them is released.
"""

from __future__ import annotations

import logging
from typing import Literal

from media_service.lifecycle_records import LifecycleRecords
from media_service.lifecycle_storage import LifecycleBucket
from shared import keys
from shared.clock import utcnow
from shared.errors import NotFound
from shared.media_records import MediaRecord, StaleTransition

log = logging.getLogger("ferry.media.holds")

HoldFlag = Literal["legal_hold", "user_hold"]


class Holds:
    def __init__(self, *, lifecycle: LifecycleRecords, storage: LifecycleBucket) -> None:
        self.lifecycle = lifecycle
        self.storage = storage

    async def hold(
        self, media_id: str, reason: str, *, flag: HoldFlag = "legal_hold"
    ) -> MediaRecord:
        if not keys.is_media_id(media_id):
            raise NotFound("no such media")
        try:
            record = await self.lifecycle.set_hold(media_id, flag=flag, on=True, reason=reason)
        except StaleTransition as error:
            raise NotFound("no such media") from error
        await self.apply_storage(record)
        # The sweeper keeps applying it while new objects may still appear (processing).
        await self.lifecycle.wake(media_id, utcnow())
        return record

    async def release(self, media_id: str, *, flag: HoldFlag = "legal_hold") -> None:
        if not keys.is_media_id(media_id):
            raise NotFound("no such media")
        try:
            record = await self.lifecycle.set_hold(media_id, flag=flag, on=False, reason=None)
        except StaleTransition as error:
            raise NotFound("no such media") from error
        if not record.held and _holds_bytes(record):
            blob = await self.lifecycle.blob_holder(record.blob_key, media_id, on=False)
            if blob is not None and not blob.held_by:
                await self._set_objects(record, on=False)
                again = await self.lifecycle.records.get_blob(record.blob_key)
                if again is not None and again.held_by:
                    await self._set_objects(record, on=True)  # another hold came meanwhile
        # The normal rules resume: the sweeper looks at it on its next pass.
        await self.lifecycle.wake(media_id, utcnow())

    async def hold_user(self, user_id: str, reason: str) -> int:
        """Hold every media `user_id` owns now; new uploads are held when created."""
        await self.lifecycle.put_user_hold(user_id, reason, utcnow())
        count = 0
        for media_id in await self.lifecycle.owned_ids(user_id):
            try:
                await self.hold(media_id, reason, flag="user_hold")
                count += 1
            except NotFound:
                continue  # deleted meanwhile
        return count

    async def release_user(self, user_id: str) -> None:
        if await self.lifecycle.user_hold(user_id) is None:
            raise NotFound("this user has no legal hold")
        await self.lifecycle.delete_user_hold(user_id)
        for media_id in await self.lifecycle.owned_ids(user_id):
            try:
                await self.release(media_id, flag="user_hold")
            except NotFound:
                continue

    async def apply_storage(self, record: MediaRecord) -> None:
        """Object Lock legal hold ON for every object this media's bytes live in (idempotent)."""
        if not _holds_bytes(record):
            return
        await self.lifecycle.blob_holder(record.blob_key, record.media_id, on=True)
        await self._set_objects(record, on=True)

    async def _set_objects(self, record: MediaRecord, *, on: bool) -> None:
        targets: list[tuple[str, str | None]] = []
        if record.version_id and not record.original_retired:
            targets.append((record.object_key, record.version_id))
        for version in await self.storage.versions(keys.derivative_prefix(record.blob_key)):
            if not version.delete_marker:
                targets.append((version.key, version.version_id))
        for key, version_id in targets:
            await self.storage.set_legal_hold(key, version_id, on=on)
        log.info(
            "legal hold %s on %d objects of %s",
            "ON" if on else "OFF",
            len(targets),
            record.media_id,
        )


def _holds_bytes(record: MediaRecord) -> bool:
    return record.blob_ref or record.derivatives_ref
