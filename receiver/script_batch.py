"""One Lua script called by many request threads, their calls sent to Redis together.

A web process answers several deliveries at once (gunicorn's threads); each used to make its
own round trip for the storing script. Here the calls of concurrent requests are written to
Redis in one pipeline and their replies read back in order (group commit): a thread that finds
no batch under way sends its own call and whatever queued meanwhile; the others wait, and
the first of those still waiting after a batch sends the next. A request never waits for more
than the batch ahead of it. Fewer writes and reads, for the web process and for Redis.

Each call keeps its own reply: an error reply (``NOSCRIPT`` after a Redis restart is retried
with the script's source) fails only its call; a broken connection fails the whole batch,
each request answering 503 as it did alone.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError, ResponseError

# A waiting request gives up after this long (the connection's own timeout ends a stuck batch first).
_WAIT_SECONDS = 10.0


class _Call:
    __slots__ = ("args", "done", "error", "leads", "reply")

    def __init__(self, args: tuple[Any, ...]) -> None:
        self.args = args
        self.done = threading.Event()
        self.leads = False  # set when this call is to send the next batch
        self.reply: Any = None
        self.error: BaseException | None = None


class ScriptBatch:
    """``call(keys, args)`` as ``Script.__call__``, sharing round trips with concurrent callers."""

    def __init__(self, connection: redis.Redis, source: str) -> None:
        self._pool = connection.connection_pool
        self._source = source
        self._sha = connection.register_script(source).sha
        self._lock = threading.Lock()
        self._queued: list[_Call] = []
        self._sending = False

    def call(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's reply; raises ``redis.RedisError`` as a lone call would."""
        call = _Call((len(keys), *keys, *args))
        with self._lock:
            self._queued.append(call)
            leads = not self._sending
            self._sending = True
        if not leads:
            if not call.done.wait(_WAIT_SECONDS):
                with self._lock:
                    if call in self._queued and not call.leads:  # never sent: safe to give up
                        self._queued.remove(call)
                        raise redis.TimeoutError("the batched script call waited too long to be sent")
                call.done.wait()  # sent meanwhile (the connection's timeout ends it), or just made to send
            leads = call.leads
        if leads:
            self._send_queued()
        if call.error is not None:
            raise call.error
        return call.reply

    def _send_queued(self) -> None:
        with self._lock:
            batch, self._queued = self._queued, []
        try:
            self._send(batch)
        finally:
            with self._lock:
                if self._queued:  # the first still waiting sends the next batch
                    self._queued[0].leads = True
                    self._queued[0].done.set()
                else:
                    self._sending = False
            for call in batch:
                call.done.set()

    def _send(self, batch: list[_Call]) -> None:
        connection = self._pool.get_connection()
        try:
            self._round_trip(connection, batch, "EVALSHA", self._sha)
            missing = [call for call in batch if isinstance(call.error, NoScriptError)]
            if missing:  # Redis lost its scripts (a restart): the source once, cached again by Redis
                self._round_trip(connection, missing, "EVAL", self._source)
        except BaseException as exc:
            connection.disconnect()  # a half-read reply must not reach the next user of the connection
            for call in batch:
                if call.reply is None and call.error is None:
                    call.error = exc
            if not isinstance(exc, redis.RedisError):
                raise
        finally:
            self._pool.release(connection)

    @staticmethod
    def _round_trip(connection: Any, calls: list[_Call], command: str, script: str) -> None:
        for call in calls:
            call.error = None
        connection.send_packed_command(connection.pack_commands([(command, script, *call.args) for call in calls]))
        for call in calls:
            try:
                call.reply = connection.read_response()
            except ResponseError as exc:
                call.error = exc
