"""Upload a file through Ferry's upload path and check that it comes back identical.

With `make run` going in another terminal:

    python scripts/upload_demo.py --user alice photo.jpg
    python scripts/upload_demo.py --token "$(make -s token USER=bob)" talk.mp4
    FERRY_TOKEN=... python scripts/upload_demo.py --content-type text/plain notes.txt

It does what any client does, printing one line per step:
1. asks the Media Service for an upload slot (content type guessed from the file's extension,
   `--content-type` overrides it; size and SHA-256 computed here);
2. sends the bytes straight to storage, never through a Ferry service: one signed PUT with every
   header the slot lists, or, for a large file, a multipart upload (sign the parts, PUT each,
   ask storage which parts it has, send what is missing, complete); if the same bytes are
   already stored, it proves it holds them instead (deduplication: no upload at all);
3. polls the media until the worker's commit step settles it (`ready`, or `failed`, ...);
4. downloads it back through a signed URL and compares it with the file, byte for byte.

The token is `--token`, else one made for `--user` with the local secret (`AUTH_JWT_SECRET`,
as `make token` makes it), else `$FERRY_TOKEN`. Exit status: 0 when the bytes came back
identical, 1 when anything failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import hashlib
import mimetypes
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx

DEFAULT_MEDIA_URL = "http://127.0.0.1:8081"
TERMINAL_STATES = frozenset({"ready", "failed", "blocked", "expired"})
CHUNK_BYTES = 1024 * 1024
# Part URLs asked for in one request, and rounds of "what is missing? send it" before giving up.
SIGN_BATCH = 100
UPLOAD_ROUNDS = 3
POLL_SECONDS = 0.2
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class DemoFailed(Exception):
    """A step failed; the message says which and why, in one line."""


@dataclass(frozen=True)
class LocalFile:
    path: Path
    size: int
    sha256: str
    content_type: str

    def read(self, offset: int, length: int) -> bytes:
        with self.path.open("rb") as source:
            source.seek(offset)
            return source.read(length)


def step(name: str, text: str) -> None:
    print(f"{name:<9} {text}", flush=True)


def _chunks(source: BinaryIO) -> Iterator[bytes]:
    while chunk := source.read(CHUNK_BYTES):
        yield chunk


def describe_file(path: Path, content_type: str | None) -> LocalFile:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for chunk in _chunks(source):
            digest.update(chunk)
    kind = content_type or mimetypes.guess_type(path.name)[0]
    if not kind:
        raise DemoFailed(f"cannot guess the content type of {path.name}: pass --content-type")
    return LocalFile(
        path=path, size=path.stat().st_size, sha256=digest.hexdigest(), content_type=kind
    )


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        text = f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        text = f"{response.status_code} {response.text[:200]!r}"
    retry_after = response.headers.get("Retry-After")
    return f"{text} (retry after {retry_after} s)" if retry_after else text


def expect(response: httpx.Response, *statuses: int, what: str) -> Any:
    """The JSON body of an expected answer; DemoFailed with the error body otherwise."""
    if response.status_code not in statuses:
        raise DemoFailed(f"{what} refused: {_error_text(response)}")
    return response.json() if response.content else None


# --- the steps -------------------------------------------------------------------------------


def request_slot(api: httpx.Client, local: LocalFile) -> dict[str, Any]:
    body = {
        "content_type": local.content_type,
        "size": local.size,
        "sha256": local.sha256,
        "filename": local.path.name,
    }
    response = api.post("/v1/media/uploads", json=body)
    slot: dict[str, Any] = expect(response, 200, 201, what="the upload slot")
    upload = slot.get("upload") or {}
    if "dedup" in slot:
        dedup = slot["dedup"]
        how = (
            f"already stored: prove possession of {dedup['length']} bytes "
            f"at offset {dedup['offset']}"
        )
    elif upload.get("method") == "MULTIPART":
        how = f"multipart, {upload['part_count']} parts of {upload['part_size']} bytes"
    else:
        how = "single signed PUT"
    step("slot", f"{response.status_code} {slot['media_id']} ({slot['media_type']}): {how}")
    return slot


def put_single(storage: httpx.Client, upload: dict[str, Any], local: LocalFile) -> None:
    started = time.monotonic()
    response = storage.put(
        upload["url"], content=local.read(0, local.size), headers=upload["headers"]
    )
    if response.status_code != 200:
        raise DemoFailed(f"storage refused the PUT: {response.status_code} {response.text[:200]}")
    elapsed = time.monotonic() - started
    step(
        "put", f"{response.status_code}: {local.size} bytes straight to storage in {elapsed:.2f} s"
    )


def _part_length(number: int, part_size: int, size: int) -> int:
    return min(part_size, size - (number - 1) * part_size)


def _received_parts(api: httpx.Client, media_id: str) -> dict[int, dict[str, Any]]:
    listing = expect(api.get(f"/v1/media/{media_id}/parts"), 200, what="the parts listing")
    return {int(part["part_number"]): part for part in listing["parts"]}


def put_multipart(
    api: httpx.Client,
    storage: httpx.Client,
    media_id: str,
    upload: dict[str, Any],
    local: LocalFile,
) -> None:
    part_size, part_count = int(upload["part_size"]), int(upload["part_count"])
    started = time.monotonic()
    for attempt in range(UPLOAD_ROUNDS + 1):
        # Storage says what it has: this is also how an interrupted upload resumes.
        received = _received_parts(api, media_id)
        missing = [
            number
            for number in range(1, part_count + 1)
            if received.get(number, {}).get("size") != _part_length(number, part_size, local.size)
        ]
        step("parts", f"storage has {part_count - len(missing)} of {part_count} parts")
        if not missing:
            break
        if attempt == UPLOAD_ROUNDS:
            raise DemoFailed(f"storage still lacks parts {missing} after {attempt} rounds")
        for first in range(0, len(missing), SIGN_BATCH):
            batch = missing[first : first + SIGN_BATCH]
            signed = expect(
                api.post(f"/v1/media/{media_id}/parts", json={"part_numbers": batch}),
                200,
                what="signing parts",
            )
            for part in signed["parts"]:
                _put_part(storage, part, part_size, part_count, local)
    parts = [
        {"part_number": number, "etag": received[number]["etag"]}
        for number in range(1, part_count + 1)
    ]
    done = expect(
        api.post(f"/v1/media/{media_id}/complete", json={"parts": parts}), 202, what="completing"
    )
    elapsed = time.monotonic() - started
    step(
        "complete",
        f"202: {local.size} bytes in {part_count} parts in {elapsed:.2f} s, state {done['state']}",
    )


def _put_part(
    storage: httpx.Client, part: dict[str, Any], part_size: int, part_count: int, local: LocalFile
) -> None:
    number = int(part["part_number"])
    data = local.read((number - 1) * part_size, _part_length(number, part_size, local.size))
    try:
        response = storage.put(part["url"], content=data, headers=part["headers"])
    except httpx.TransportError as error:
        # The next round asks storage what arrived and sends the rest.
        step("put part", f"{number}/{part_count} failed ({error!r}); will resume")
        return
    if response.status_code != 200:
        step("put part", f"{number}/{part_count} refused: {response.status_code}; will resume")
        return
    step("put part", f"{number}/{part_count}: {len(data)} bytes, ETag {response.headers['ETag']}")


def prove(api: httpx.Client, media_id: str, dedup: dict[str, Any], local: LocalFile) -> None:
    content = local.read(int(dedup["offset"]), int(dedup["length"]))
    proof = hashlib.sha256(bytes.fromhex(dedup["nonce"]) + content).hexdigest()
    document = expect(
        api.post(f"/v1/media/{media_id}/proof", json={"proof": proof}), 200, what="the proof"
    )
    step("proof", f"200: possession proven, no upload needed; state {document['state']}")


def wait_until_settled(
    api: httpx.Client,
    media_id: str,
    timeout: float,
    settled: frozenset[str] = TERMINAL_STATES,
) -> dict[str, Any]:
    started = time.monotonic()
    seen: list[str] = []
    while True:
        document: dict[str, Any] = expect(
            api.get(f"/v1/media/{media_id}"), 200, what="reading the media"
        )
        if not seen or seen[-1] != document["state"]:
            seen.append(document["state"])
        if document["state"] in settled:
            break
        if time.monotonic() - started > timeout:
            raise DemoFailed(f"still {document['state']} after {timeout:.0f} s")
        time.sleep(POLL_SECONDS)
    elapsed = time.monotonic() - started
    error = document.get("error")
    why = f" ({error['code']}: {error['message']})" if error else ""
    step("state", f"{' → '.join(seen)} after {elapsed:.2f} s{why}")
    return document


def upload(
    api: httpx.Client,
    storage: httpx.Client,
    local: LocalFile,
    timeout: float,
    settled: frozenset[str] = TERMINAL_STATES,
) -> dict[str, Any]:
    """Steps 1 to 3: a slot, the bytes to storage (or a proof of possession), then the media
    polled until its state is one of `settled`; its last document."""
    slot = request_slot(api, local)
    media_id = str(slot["media_id"])
    transfer = slot.get("upload")
    if "dedup" in slot:
        prove(api, media_id, slot["dedup"], local)
    elif transfer and transfer["method"] == "MULTIPART":
        put_multipart(api, storage, media_id, transfer, local)
    elif transfer:
        put_single(storage, transfer, local)
    else:
        raise DemoFailed(f"the slot has neither an upload nor a challenge: {slot}")
    return wait_until_settled(api, media_id, timeout, settled)


def download_and_compare(
    api: httpx.Client, storage: httpx.Client, media_id: str, local: LocalFile
) -> bool:
    signed = expect(api.get(f"/v1/media/{media_id}/url"), 200, what="the download URL")
    identical = True
    received = 0
    with (
        storage.stream("GET", signed["url"]) as response,
        local.path.open("rb") as original,
    ):
        if response.status_code != 200:
            raise DemoFailed(f"storage refused the download: {response.status_code}")
        for chunk in response.iter_bytes(CHUNK_BYTES):
            received += len(chunk)
            if identical and original.read(len(chunk)) != chunk:
                identical = False
        identical = identical and received == local.size
    verdict = "identical" if identical else "DIFFERENT"
    step("download", f"{received} bytes through a signed URL: {verdict} to {local.path.name}")
    return identical


# --- command line ----------------------------------------------------------------------------


def resolve_token(args: argparse.Namespace) -> str | None:
    if args.token:
        return str(args.token)
    if args.user:
        # Imported only here: the rest of the demo needs nothing but httpx.
        from shared.auth import issue_token
        from shared.settings import CommonSettings

        return issue_token(args.user, CommonSettings().auth_jwt_secret)
    return os.environ.get("FERRY_TOKEN") or None


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python scripts/upload_demo.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, help="the file to upload")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--token", help="a bearer token (default: $FERRY_TOKEN)")
    who.add_argument("--user", help="make a local token for this user (e.g. alice)")
    parser.add_argument(
        "--media-url",
        default=os.environ.get("FERRY_MEDIA_URL", DEFAULT_MEDIA_URL),
        help=f"the Media Service (default: $FERRY_MEDIA_URL or {DEFAULT_MEDIA_URL})",
    )
    parser.add_argument("--content-type", help="default: guessed from the file's extension")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the media to settle"
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace, token: str) -> bool:
    local = describe_file(args.file, args.content_type)
    step(
        "file",
        f"{local.path.name}: {local.size} bytes, {local.content_type}, sha256 {local.sha256[:16]}…",
    )
    timeout = httpx.Timeout(60.0)
    with (
        httpx.Client(
            base_url=args.media_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        ) as api,
        # Storage gets no Ferry token: the signed URL is the only credential it sees.
        httpx.Client(timeout=timeout) as storage,
    ):
        document = upload(api, storage, local, args.timeout)
        if document["state"] != "ready":
            raise DemoFailed(f"the media ended {document['state']}, not ready")
        return download_and_compare(api, storage, str(document["media_id"]), local)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if not args.file.is_file():
        print(f"no such file: {args.file}", file=sys.stderr)
        return EXIT_USAGE
    token = resolve_token(args)
    if not token:
        print("no token: pass --user NAME, --token TOKEN or set FERRY_TOKEN", file=sys.stderr)
        return EXIT_USAGE
    try:
        identical = run(args, token)
    except DemoFailed as failure:
        step("failed", str(failure))
        return EXIT_FAILED
    except httpx.TransportError as error:
        step("failed", f"{error!r}: is `make run` going, and is {args.media_url} right?")
        return EXIT_FAILED
    return EXIT_OK if identical else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
