"""The gateway's calls to the Message Service's internal API, over one long-lived httpx client.

The gateway relays; the Message Service decides. Messages pass through as the JSON objects the
Message Service wrote (only `message_id` and `seq` are read here), so fields it adds later
reach clients without a gateway release.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.models import (
    DevicePending,
    DeviceRef,
    InternalSend,
    PendingBatch,
    PendingBatchResult,
    ReceivedAck,
)

log = logging.getLogger("ferry.gateway.message_client")

# What a send error frame says when the Message Service cannot answer.
UNAVAILABLE = "unavailable"


class MessageServiceError(Exception):
    """Base of everything a Message Service call raises."""


class MessageServiceUnavailable(MessageServiceError):
    """No usable answer (unreachable, timeout, 5xx, a misconfigured token): retry later."""


class SendRejected(MessageServiceError):
    """The Message Service refused the send (a 4xx): the client sees its code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Stored(_Lenient):
    message_id: str
    seq: int


class _ErrorDetail(_Lenient):
    code: str
    message: str


class _ErrorBody(_Lenient):
    error: _ErrorDetail


class _PendingPage(_Lenient):
    messages: list[dict[str, Any]]


# Result of one device in a batch: its pending messages, or why not.
Backlog = list[dict[str, Any]] | SendRejected | MessageServiceUnavailable


@dataclass(frozen=True, slots=True)
class Stored:
    """What a `sent` frame needs from the stored message."""

    message_id: str
    seq: int


def failure_of(status: int, content: bytes) -> MessageServiceError:
    """The exception for a non-2xx answer (pure: unit-tested).

    A 4xx is the client's problem and carries the contract's error body through; a 401 or 403
    from an internal endpoint means our internal token is wrong, which no client can fix.
    """
    if status in (401, 403) or status >= 500 or status < 400:
        return MessageServiceUnavailable(f"the Message Service answered {status}")
    try:
        detail = _ErrorBody.model_validate_json(content).error
    except ValidationError:
        return SendRejected(status, "rejected", f"the Message Service refused the send ({status})")
    return SendRejected(status, detail.code, detail.message)


def _too_many_devices(content: bytes) -> SendRejected | None:
    """The refusal in a 403 body, when it is `too_many_devices` (pure)."""
    try:
        detail = _ErrorBody.model_validate_json(content).error
    except ValidationError:
        return None
    if detail.code != "too_many_devices":
        return None
    return SendRejected(403, detail.code, detail.message)


def _backlog(result: DevicePending) -> Backlog:
    """One device's result in a batch (pure)."""
    if result.status == 200:
        return result.messages
    error = result.error
    if result.status == 403 and error is not None and error.code == "too_many_devices":
        return SendRejected(403, error.code, error.message)
    return MessageServiceUnavailable(f"the pending messages could not be read ({result.status})")


def _segment(value: str) -> str:
    # Ids travel as path segments: nothing in them may add one.
    return quote(value, safe="")


class MessageClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        # From `shared.internal_client`: it adds the internal token and the request id.
        self._http = http

    async def _call(self, method: str, path: str, body: BaseModel | None = None) -> httpx.Response:
        try:
            return await self._http.request(
                method,
                path,
                content=body.model_dump_json() if body is not None else None,
                headers={"Content-Type": "application/json"} if body is not None else None,
            )
        except httpx.HTTPError as error:
            raise MessageServiceUnavailable(
                f"the Message Service is unreachable ({type(error).__name__})"
            ) from error

    async def send(self, send: InternalSend) -> Stored:
        """Store a message; `SendRejected` or `MessageServiceUnavailable` otherwise."""
        response = await self._call(
            "POST", f"/internal/conversations/{_segment(send.conversation_id)}/messages", send
        )
        if response.status_code not in (200, 201):
            failure = failure_of(response.status_code, response.content)
            if response.status_code in (401, 403):
                log.error("the Message Service refused our internal token: check INTERNAL_TOKEN")
            raise failure
        try:
            stored = _Stored.model_validate_json(response.content)
        except ValidationError as error:
            raise MessageServiceUnavailable("the Message Service answered an odd body") from error
        return Stored(message_id=stored.message_id, seq=stored.seq)

    async def admit(self, user_id: str, device_id: str) -> None:
        """`SendRejected` (403 `too_many_devices`) when the account has no room for this
        device; `MessageServiceUnavailable` when nobody could say."""
        response = await self._call(
            "POST", f"/internal/devices/{_segment(user_id)}/{_segment(device_id)}/admit"
        )
        if response.status_code == 204:
            return
        if response.status_code == 403:
            refusal = _too_many_devices(response.content)
            if refusal is not None:
                raise refusal
        raise MessageServiceUnavailable(f"device admission answered {response.status_code}")

    async def pending(self, user_id: str, device_id: str) -> list[dict[str, Any]]:
        """The device's pending messages, in delivery order, as JSON objects.

        One call admits the device too (the Message Service admits whoever asks for its
        pending): `SendRejected` (403 `too_many_devices`) when the account has no room for it.
        """
        response = await self._call(
            "GET", f"/internal/devices/{_segment(user_id)}/{_segment(device_id)}/pending"
        )
        if response.status_code == 403:
            refusal = _too_many_devices(response.content)
            if refusal is not None:
                raise refusal
        if response.status_code != 200:
            raise MessageServiceUnavailable(
                f"the pending messages could not be read ({response.status_code})"
            )
        try:
            page = _PendingPage.model_validate_json(response.content)
        except ValidationError as error:
            raise MessageServiceUnavailable("the Message Service answered an odd body") from error
        return page.messages

    async def pending_many(self, devices: list[tuple[str, str]]) -> list[Backlog]:
        """`pending` for many (user, device) at once: one result per device, in order."""
        if len(devices) == 1:
            return [await self._one_pending(*devices[0])]
        batch = PendingBatch(
            devices=[DeviceRef(user_id=user, device_id=device) for user, device in devices]
        )
        try:
            response = await self._http.post(
                "/internal/devices/pending", json=batch.model_dump(mode="json")
            )
        except httpx.HTTPError as error:
            raise MessageServiceUnavailable(
                f"the Message Service is unreachable ({type(error).__name__})"
            ) from error
        if response.status_code in (404, 405):  # an older Message Service: one call each
            return [await self._one_pending(user, device) for user, device in devices]
        if response.status_code != 200:
            raise MessageServiceUnavailable(
                f"the pending messages could not be read ({response.status_code})"
            )
        try:
            results = PendingBatchResult.model_validate_json(response.content).results
        except ValidationError as error:
            raise MessageServiceUnavailable("the Message Service answered an odd body") from error
        if len(results) != len(devices):
            raise MessageServiceUnavailable("the Message Service answered an odd body")
        return [_backlog(result) for result in results]

    async def _one_pending(self, user_id: str, device_id: str) -> Backlog:
        try:
            return await self.pending(user_id, device_id)
        except (SendRejected, MessageServiceUnavailable) as error:
            return error

    async def received(self, user_id: str, device_id: str, message_ids: list[str]) -> None:
        """This device has these messages: they stop being pending for it."""
        response = await self._call(
            "POST",
            f"/internal/devices/{_segment(user_id)}/{_segment(device_id)}/received",
            ReceivedAck(message_ids=message_ids),
        )
        if response.status_code not in (200, 204):
            raise MessageServiceUnavailable(
                f"the acknowledgement was not stored ({response.status_code})"
            )
