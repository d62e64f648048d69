"""The web and the worker warn at start when Redis answers anyone on the network (issue 14, finding 3)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config.redis_exposure import open_redis_warning
from devstack.services import Process, free_port, redis_server_binary, wait_until


def routable_address() -> str | None:
    """This host's address on its network (no packet is sent), or None on a host with loopback only."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.fixture
def open_redis(tmp_path: Path) -> Iterator[tuple[str, int]]:
    address = routable_address()
    if address is None:
        pytest.skip("this host has no non-loopback address")
    port = free_port()
    argv = [redis_server_binary(), "--port", str(port), "--bind", address, "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    process = Process("redis", argv, os.environ, tmp_path / "redis.log")
    wait_until(redis.Redis(host=address, port=port, socket_connect_timeout=0.5).ping, 15, "redis", process)
    yield address, port
    process.stop()


def test_a_redis_without_a_password_on_the_network_is_warned_about(open_redis: tuple[str, int]) -> None:
    address, port = open_redis
    warning = open_redis_warning(f"redis://{address}:{port}/0")
    assert warning is not None and "accepts connections without a password" in warning


def test_a_redis_that_wants_a_password_is_not(open_redis: tuple[str, int]) -> None:
    address, port = open_redis
    redis.Redis(host=address, port=port).config_set("requirepass", "s3cret-pass")
    assert open_redis_warning(f"redis://:s3cret-pass@{address}:{port}/0") is None


def test_loopback_and_unix_sockets_are_not_checked(redis_url: str) -> None:
    assert open_redis_warning(redis_url) is None
    assert open_redis_warning("unix:///run/redis.sock") is None
