"""In-memory stand-ins for AWS clients, shared by the unit tests.

Unit tests use these to drive pure mechanics (a consumer loop, a sampler) quickly and
deterministically; everything that talks to AWS for real is covered by the integration tests
against the emulator. A fake implements only the calls our code makes, with botocore's names.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from botocore.exceptions import EndpointConnectionError

FAKE_SQS_ENDPOINT = "http://sqs.local"


class FakeSqs:
    """Just enough SQS for the consumer (receive, delete, visibility) and the depth sampler
    (queue URLs, attributes).

    `receive_message` long-polls until a message is `put` (only cancellation ends it early).
    `down` makes the attribute calls fail as if SQS were unreachable; `hang` makes
    `get_queue_attributes` never answer.
    """

    def __init__(self) -> None:
        # The consumer's side.
        self.waiting: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.receives: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.visibility: list[tuple[str, int]] = []
        self._ids = itertools.count(1)
        # The sampler's side: attributes by queue name.
        self.attributes: dict[str, dict[str, str]] = {}
        self.down = False
        self.hang = False
        self.url_lookups = 0
        self.calls = 0  # get_queue_attributes calls

    # --- messages --------------------------------------------------------------------------

    def put(self, body: str, *, receive_count: int = 1) -> str:
        """Enqueue a message; returns its receipt handle."""
        handle = f"handle-{next(self._ids)}"
        self.waiting.append(
            {
                "MessageId": handle.replace("handle", "id"),
                "ReceiptHandle": handle,
                "Body": body,
                "Attributes": {"ApproximateReceiveCount": str(receive_count)},
            }
        )
        self.arrived.set()
        return handle

    async def receive_message(self, **request: Any) -> dict[str, Any]:
        self.receives.append(request)
        while not self.waiting:
            self.arrived.clear()
            await self.arrived.wait()  # a long poll: only cancellation ends it early
        count = request["MaxNumberOfMessages"]
        taken, self.waiting = self.waiting[:count], self.waiting[count:]
        return {"Messages": taken}

    async def delete_message(self, *, QueueUrl: str, ReceiptHandle: str) -> None:  # noqa: N803
        self.deleted.append(ReceiptHandle)

    async def change_message_visibility(
        self,
        *,
        QueueUrl: str,  # noqa: N803
        ReceiptHandle: str,  # noqa: N803
        VisibilityTimeout: int,  # noqa: N803
    ) -> None:
        self.visibility.append((ReceiptHandle, VisibilityTimeout))

    # --- queues and their attributes -----------------------------------------------------------

    @staticmethod
    def url(name: str) -> str:
        return f"{FAKE_SQS_ENDPOINT}/123/{name}"

    async def get_queue_url(self, QueueName: str) -> dict[str, Any]:  # noqa: N803 - boto's name
        self.url_lookups += 1
        if self.down:
            raise EndpointConnectionError(endpoint_url=FAKE_SQS_ENDPOINT)
        return {"QueueUrl": self.url(QueueName)}

    async def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> Any:  # noqa: N803
        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.down:
            raise EndpointConnectionError(endpoint_url=FAKE_SQS_ENDPOINT)
        return {"Attributes": self.attributes.get(QueueUrl.rsplit("/", 1)[1], {})}
