"""From asyncua's publish loop to the source: the subscription's callback and a bounded feed (issue 17).

``PublishFeed.attach`` puts the feed's own callback in place of asyncua's ``Subscription`` callback
for one subscription (the ``Subscription`` object still creates and deletes its monitored items), and
makes the session decode publish responses with ``fastpublish.decode`` first, asyncua's decoder for
what that leaves. Either way the callback turns data changes into readings on the publish loop (it
never awaits, so a slow source never blocks publishing) and keeps them in the feed.

The feed holds at most ``capacity`` readings, overflow policy ``drop_oldest`` (the newest state wins;
the newest notification is always kept whole), and counts what it dropped. A status change that is not
good (the server ended the subscription, or asyncua told us the connection is gone) is kept for the
source to raise on; event notifications are ignored: this source monitors no events.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from asyncua import ua
from asyncua.ua.ua_binary import struct_from_binary
from asyncua.ua.uaerrors import UaStructParsingError

from agent.errors import FatalError
from agent.records import Reading
from plugins.opcua.changes import ChangeReader
from plugins.opcua.fastpublish import Changes, decode
from plugins.opcua.status import reading


class PublishFeed:
    """The readings of one subscription, from its publish callback to the source's loop."""

    def __init__(self, tags: dict[int, str], capacity: int) -> None:
        self.tags, self.capacity = tags, capacity
        self.reader = ChangeReader(tags)
        self._parts: deque[Sequence[Reading]] = deque()
        self._size = 0
        self._ready = asyncio.Event()
        self.dropped = 0
        self.ended: ua.StatusCode | None = None
        self.last_publish_at: float | None = None
        self.decoded = {"fast": 0, "asyncua": 0}

    def __len__(self) -> int:
        """Readings waiting for the source."""
        return self._size

    def attach(self, uaclient: Any, subscription_id: int) -> None:
        """Take the publish results of ``subscription_id`` on ``uaclient`` (asyncua's UaClient).

        Raises:
            FatalError: this asyncua has no per-subscription callbacks to take (1.1 to 2.1 have).
        """
        session = getattr(uaclient, "session", uaclient)  # 2.x: a UaSession; 1.x: the client itself
        callbacks = getattr(session, "_subscription_callbacks", None)
        if not isinstance(callbacks, dict):
            raise FatalError(
                f"asyncua {type(session).__name__} has no subscription callbacks; use asyncua 2.1"
            )
        callbacks[subscription_id] = self.on_publish
        send = getattr(session, "_send_request", None)
        if send is not None and "publish" not in vars(session):
            session.publish = self._publisher(session, send)  # the loop calls self.publish(acks)

    def _publisher(self, session: Any, send: Any) -> Any:
        async def publish(acks: list[ua.SubscriptionAcknowledgement]) -> ua.PublishResponse:
            """asyncua's ``UaSession.publish``, decoding with ``fastpublish.decode`` first."""
            request = ua.PublishRequest()
            request.Parameters.SubscriptionAcknowledgements = acks if acks else []
            data = await send(request, timeout=0)
            fast = decode(bytes(data))
            if fast is not None:
                self.decoded["fast"] += 1
                return fast
            self.decoded["asyncua"] += 1
            try:
                return struct_from_binary(ua.PublishResponse, data)
            except Exception as ex:
                session.logger.exception("Error parsing notification from server")
                raise UaStructParsingError from ex

        return publish

    def on_publish(self, result: ua.PublishResult) -> None:
        """The subscription's callback: called on the publish loop with each result; never raises."""
        self.last_publish_at = time.monotonic()
        data = result.NotificationMessage.NotificationData
        if not data:
            return
        now = time.time()
        for notification in data:
            if isinstance(notification, Changes):
                self._put(self.reader(notification, now))
            elif isinstance(notification, ua.DataChangeNotification):
                tags = self.tags
                self._put(
                    [
                        reading(tags[item.ClientHandle], item.Value, now)
                        for item in notification.MonitoredItems
                        if item.ClientHandle in tags and item.Value is not None
                    ]
                )
            elif isinstance(notification, ua.StatusChangeNotification):
                code = notification.Status
                if code is not None and not code.is_good() and self.ended is None:
                    self.ended = code
                    self._ready.set()

    def _put(self, part: Sequence[Reading]) -> None:
        if not part:
            return
        self._parts.append(part)
        self._size += len(part)
        while self._size > self.capacity and len(self._parts) > 1:
            old = self._parts.popleft()
            self._size -= len(old)
            self.dropped += len(old)
        self._ready.set()

    async def get(self, within_s: float) -> list[Sequence[Reading]]:
        """What is waiting, oldest first, waiting up to ``within_s`` for something (``[]``: nothing)."""
        if not self._parts and self.ended is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within_s):
                    await self._ready.wait()
        self._ready.clear()
        parts = list(self._parts)
        self._parts.clear()
        self._size = 0
        return parts
