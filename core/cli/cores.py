"""Each worker of ``credenza serve`` on a core of its own (``[server] pin_workers``).

A worker's threads take turns holding Python's GIL, and every time one lets go of it (a SQLite
commit, a signature, a lock) another takes it up. Left to the kernel, the next holder often
runs on the other core: the wake-up crosses cores and the interpreter's working set moves
between caches. On the 2-core machine of ``benchmarks/``, two threads issuing tokens in one
process used 0.70-0.81 ms of CPU per token across two cores and 0.42-0.43 ms on one; served,
an unpinned server left 30% of the machine idle while requests queued. With each worker on a
core of its own, issuance went from ~0.3x to ~0.45x the bare limit, and the reading paths of
``benchmarks/http_paths.py`` held or gained (docs/operations.md, "Sizing the server").

By default (``auto``) a server pins its workers when they are at least as many as the cores it
may use (its CPU affinity, which ``taskset`` or a container's cpuset narrow): it has the
machine to itself, as docs/operations.md sizes it. With fewer workers, other servers may share
the cores, and the workers of several servers, each pinned to the same first cores, would
crowd there while other cores idle: the kernel keeps placing them.

A worker claims the lowest free slot of its server and takes the core at that position among
the usable ones: one worker per core, then around again. A slot is an abstract Unix socket
name bound for the worker's life, so the kernel frees it when the worker dies, however it
dies, and a replacement takes the same core.
"""

from __future__ import annotations

import errno
import logging
import os
import socket

import attrs

log = logging.getLogger(__name__)


@attrs.frozen
class Slot:
    """A claimed slot: its number, and the bound socket that holds it until closed."""

    number: int
    holder: socket.socket

    def close(self) -> None:
        """Free the slot."""
        self.holder.close()


#: this worker's slot, held for its life
_claimed: list[Slot] = []


def claim_slot(server_pid: int) -> Slot:
    """The lowest slot no live worker of the server ``server_pid`` holds."""
    number = 0
    while True:
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            holder.bind(f"\0credenza-{server_pid}-worker-slot-{number}")
        except OSError as exc:
            holder.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            number += 1  # a live worker holds it
            continue
        return Slot(number, holder)


def pin_worker(mode: str, workers: int) -> int | None:
    """Pin every thread of this worker process (and so every thread it starts later) to the
    core of the lowest slot free among the workers of its server (its parent), as ``[server]
    pin_workers`` (``mode``) says for a server of ``workers`` workers: the core, or None where
    it stays unpinned (never; auto with fewer workers than usable cores, where other servers
    may share the machine and the kernel should keep placing all of them; one usable core; no
    CPU affinity on this platform; or pinning not allowed here)."""
    if mode == "never" or not hasattr(os, "sched_setaffinity"):
        return None
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2 or (mode == "auto" and workers < len(usable)):
        return None
    claim: Slot | None = None
    try:
        claim = claim_slot(os.getppid())
        core = usable[claim.number % len(usable)]
        for thread in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(thread), {core})
            except ProcessLookupError:  # a thread that ended meanwhile
                continue
    except OSError as exc:  # not allowed here: serve unpinned rather than not at all
        log.warning("worker %d left unpinned: %s", os.getpid(), exc)
        if claim is not None:
            claim.close()
        return None
    _claimed.append(claim)
    log.debug("worker %d pinned to core %d", os.getpid(), core)
    return core
