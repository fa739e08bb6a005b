"""Random identifiers (request and token ids): never repeated, across threads and forks."""

from __future__ import annotations

import os
import threading

from credenza.secrets import ID_RANDOMNESS_CHUNK, id_bytes, new_token_id


def test_ids_of_many_threads_never_repeat() -> None:
    drawn: list[list[bytes]] = [[] for _ in range(8)]

    def draw(into: list[bytes]) -> None:
        # past one chunk, so that each thread refills its store
        into.extend(id_bytes(10) for _ in range(ID_RANDOMNESS_CHUNK // 10 + 50))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [value for into in drawn for value in into]
    assert len(set(every)) == len(every) and {len(value) for value in every} == {10}
    assert len({new_token_id() for _ in range(1000)}) == 1000


def test_a_forked_child_never_draws_what_its_parent_draws() -> None:
    """The store of random bytes is copied by fork: without drawing afresh, parent and child
    would hand out the same next ids (two workers of one server, two equal token ids)."""
    id_bytes(16)  # this thread's store is filled before the fork
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.write(writer, id_bytes(16))
        os._exit(0)
    os.close(writer)
    from_child = os.read(reader, 16)
    os.close(reader)
    os.waitpid(child, 0)
    assert len(from_child) == 16 and from_child != id_bytes(16)
