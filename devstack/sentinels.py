"""A Redis Sentinel set on loopback: a primary, its replicas and three sentinels, for the failover
test and the benchmark (``redis-server`` and ``redis-sentinel`` from Debian's packages).

Nothing is kept on disk (no RDB, no AOF): as in a failover that matters, the replica holds the
data, and a primary killed with SIGKILL comes back empty, to be made a replica by the sentinels.
The sentinels are tuned to notice a dead primary within a second (``down-after-milliseconds``).
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from config.redis_connection import online_replicas
from devstack.services import Process, StackError, free_port, redis_server_binary, wait_until

SERVICE = "aiwyn"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


def redis_sentinel_binary() -> str:
    """The ``redis-sentinel`` executable, or a ``StackError`` saying how to install it."""
    path = shutil.which("redis-sentinel")
    if path is None:
        raise StackError("redis-sentinel is not installed (Debian/Ubuntu: 'sudo apt-get install redis-sentinel')")
    return path


@dataclass
class SentinelSet:
    """The processes of the set by name (``node0`` the first primary, ``node1``... its replicas, ``sentinel0``...)."""

    directory: Path
    node_ports: list[int]
    sentinel_ports: list[int]
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """``REDIS_URL`` for the service: ``redis+sentinel://127.0.0.1:p,.../aiwyn/0``."""
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports) + f"/{SERVICE}/0"

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=2)

    def primary_port(self) -> int | None:
        """The primary's port as every sentinel answering says it; None while they disagree or none knows."""
        seen = set()
        for port in self.sentinel_ports:
            try:
                with self.node(port) as sentinel:
                    address = sentinel.sentinel_get_master_addr_by_name(SERVICE)
            except redis.RedisError:
                continue
            seen.add(int(address[1]) if address else None)
        return seen.pop() if len(seen) == 1 else None

    def start_node(self, index: int, replica_of: int | None = None) -> Process:
        port = self.node_ports[index]
        directory = self.directory / f"node{index}"
        directory.mkdir(parents=True, exist_ok=True)
        argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(directory),
                "--repl-diskless-sync-delay", "0"]  # a returning replica is sent the data at once, not after 5 s
        if replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        process = Process(f"node{index}", argv, os.environ, directory / "redis.log")
        wait_until(self.node(port).ping, 15, f"redis node{index} on port {port}", process)
        self.processes[f"node{index}"] = process
        return process

    def start_sentinel(self, index: int) -> Process:
        port = self.sentinel_ports[index]
        directory = self.directory / f"sentinel{index}"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "sentinel.conf"  # the sentinel rewrites it as it learns the set
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.node_ports[0]} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        process = Process(f"sentinel{index}", [redis_sentinel_binary(), str(config)], os.environ, directory / "sentinel.log")
        wait_until(self.node(port).ping, 15, f"sentinel{index} on port {port}", process)
        self.processes[f"sentinel{index}"] = process
        return process

    def replicas_in_step(self, primary: int) -> int:
        """How many replicas the primary on ``primary`` has online."""
        with self.node(primary) as node:
            return online_replicas(node)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash of the machine would (nothing is flushed anywhere)."""
        process = self.processes[name]
        process.signal(signal.SIGKILL)
        process.popen.wait(10)
        process.stop()

    def stop(self) -> None:
        for name in sorted(self.processes, key=lambda n: not n.startswith("sentinel")):
            self.processes[name].stop()


@contextmanager
def sentinel_set(directory: Path, replicas: int = 1, sentinels: int = 3) -> Iterator[SentinelSet]:
    """Start a primary, ``replicas`` replicas in step with it and ``sentinels`` sentinels that agree on it; stop them all after."""
    redis_sentinel_binary()
    group = SentinelSet(directory, [free_port() for _ in range(1 + replicas)], [free_port() for _ in range(sentinels)])
    try:
        group.start_node(0)
        for index in range(1, 1 + replicas):
            group.start_node(index, replica_of=group.node_ports[0])
        wait_until(lambda: group.replicas_in_step(group.node_ports[0]) == replicas, 30, "the replicas in step")
        for index in range(sentinels):
            group.start_sentinel(index)
        # Every sentinel knows the primary, the replicas and the other sentinels before anyone relies on a failover.
        def agreed() -> bool:
            for port in group.sentinel_ports:
                with group.node(port) as sentinel:
                    state = sentinel.sentinel_master(SERVICE)
                if int(state["num-slaves"]) < replicas or int(state["num-other-sentinels"]) < sentinels - 1:
                    return False
            return group.primary_port() == group.node_ports[0]

        wait_until(agreed, 30, "the sentinels agreeing on the set")
        yield group
    finally:
        group.stop()
