"""Calls of one script from many threads, sent together: each caller still gets its own reply or error."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from receiver.script_batch import ScriptBatch

# Appends to a list and answers what it was given and the list's length: each reply is the caller's own.
ECHO = "redis.call('RPUSH', KEYS[1], ARGV[1]) return {ARGV[1], redis.call('LLEN', KEYS[1])}"
FAIL_ON_BAD = "if ARGV[1] == 'bad' then return redis.error_reply('refused') end return ARGV[1]"


def test_concurrent_calls_each_get_their_own_reply_and_are_all_applied(redis_client: redis.Redis) -> None:
    batch = ScriptBatch(redis_client, ECHO)
    start = threading.Barrier(16)

    def call(n: int) -> list[bytes | int]:
        start.wait()
        return [batch.call(["echo"], [f"v{n}-{i}"]) for i in range(50)]

    with ThreadPoolExecutor(16) as pool:
        replies = [reply for thread in pool.map(call, range(16)) for reply in thread]
    assert sorted(value for value, _ in replies) == sorted(f"v{n}-{i}".encode() for n in range(16) for i in range(50))
    assert sorted(length for _, length in replies) == list(range(1, 801))  # every call applied once, in some order
    assert redis_client.llen("echo") == 800


def test_an_error_reply_fails_only_its_own_call(redis_client: redis.Redis) -> None:
    batch = ScriptBatch(redis_client, FAIL_ON_BAD)
    start = threading.Barrier(8)

    def call(value: str) -> bytes | str:
        start.wait()
        try:
            return batch.call([], [value])
        except redis.ResponseError as exc:
            return f"error: {exc}"

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, ["ok", "bad"] * 4))
    assert answers == [b"ok", "error: refused"] * 4


def test_a_script_lost_by_redis_is_sent_again_by_its_source(redis_client: redis.Redis) -> None:
    batch = ScriptBatch(redis_client, ECHO)
    assert batch.call(["echo"], ["first"]) == [b"first", 1]
    redis_client.script_flush()  # as after a Redis restart
    assert batch.call(["echo"], ["second"]) == [b"second", 2]
    assert batch.call(["echo"], ["third"]) == [b"third", 3]


def test_an_unreachable_redis_fails_the_call_and_leaves_nothing_stuck() -> None:
    batch = ScriptBatch(redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1), ECHO)
    for value in ("lost", "lost again"):  # the second caller sends again: no batch is left half-sent
        with pytest.raises(redis.ConnectionError):
            batch.call(["echo"], [value])


def test_a_connection_closed_by_redis_is_replaced(redis_client: redis.Redis, redis_url: str) -> None:
    batch = ScriptBatch(redis_client, ECHO)
    assert batch.call(["echo"], ["before"]) == [b"before", 1]
    redis.Redis.from_url(redis_url).client_kill_filter(_type="normal", skipme=True)  # the pooled connection too
    assert batch.call(["echo"], ["after"]) == [b"after", 2]
