"""Open WebSockets per client address, across every web process: `SEATMAP_WS_MAX_PER_ADDRESS`.

Counted the way presence is (channels.py): one Redis hash per address (`{prefix}:{wsaddr:ADDR}`,
its own hash tag, so every command and script touches one key and runs unchanged on Redis
Cluster), one field per process holding that process's count and when it last wrote it. A new
socket is admitted by one script on that key (`sockets_admit` in connections.lua): the fresh
fields of the other processes plus ours, against the cap, and ours rewritten in the same step,
so two processes admitting at once never pass the cap together.

A process that dies leaks nothing for long: it rewrites its fields once a second (`refresh`,
from the channels' tick), and a field older than `FRESH_MS` is not counted and is dropped by
the next admission; the key itself expires when no process rewrites it. The address is the
ASGI client's: behind a proxy, the forwarded client's address (uvicorn `--proxy-headers` with
`FORWARDED_ALLOW_IPS`), otherwise every client would share the proxy's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import msgspec
from redis.exceptions import RedisError

from seatmap.live import replies
from seatmap.live.scripts import Scripts

log = logging.getLogger("seatmap.live.connections")

FRESH_MS: Final = 5000  # a process's count older than this is a dead process's
_KEY_TTL_MS: Final = 60_000
_ADMIT: Final = msgspec.json.Decoder(replies.Admitted | replies.Full)


class Connections:
    """This process's open sockets per address, and the cross-process admission against a cap."""

    def __init__(self, scripts: Scripts, prefix: str, process_id: str) -> None:
        self.scripts = scripts
        self.prefix = prefix
        self.process_id = process_id
        self.counts: dict[str, int] = {}

    def key(self, address: str) -> str:
        return f"{self.prefix}:{{wsaddr:{address[:100]}}}"

    async def admit(self, address: str, cap: int) -> bool:
        """Count one more socket from `address` unless that passes `cap`; False: refuse it.

        Redis unreachable: admitted (the cap guards against abuse; it is not worth refusing
        everyone while Redis is away), and counted here, so the next refresh writes it.
        """
        mine = self.counts.get(address, 0) + 1
        self.counts[address] = mine
        try:
            raw = await self.scripts(
                "sockets_admit", [self.key(address)], [self.process_id, mine, FRESH_MS, cap, _KEY_TTL_MS]
            )
        except (RedisError, OSError) as exc:
            log.warning("socket admission not checked (%s); admitted", exc)
            return True
        except BaseException:
            self._forget_one(address)
            raise
        if isinstance(_ADMIT.decode(raw), replies.Full):
            self._forget_one(address)
            return False
        return True

    async def leave(self, address: str) -> None:
        """A socket from `address` closed: this process's count, written at once."""
        self._forget_one(address)
        try:
            count = self.counts.get(address, 0)
            await self.scripts("sockets_set", [self.key(address)], [self.process_id, count, _KEY_TTL_MS])
        except (RedisError, OSError) as exc:
            log.warning("socket count not written (%s); the next refresh writes it", exc)

    async def refresh(self) -> None:
        """Rewrite every count of this process, so that none of them goes stale while it lives."""
        if self.counts:
            await asyncio.gather(
                *(
                    self.scripts("sockets_set", [self.key(address)], [self.process_id, n, _KEY_TTL_MS])
                    for address, n in list(self.counts.items())
                )
            )

    def _forget_one(self, address: str) -> None:
        left = self.counts.get(address, 0) - 1
        if left > 0:
            self.counts[address] = left
        else:
            self.counts.pop(address, None)
