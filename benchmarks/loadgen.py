"""The benchmarks' load: a fixed number of calls from concurrent client threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests


def concurrently(total: int, clients: int,
                 call: Callable[[requests.Session], str | None]) -> tuple[float, list[float]]:
    """Run ``call`` ``total`` times from ``clients`` threads, each with its own session.

    ``call`` returns None on success or a description of the failure. Returns (wall seconds,
    sorted latencies); raises SystemExit if any call failed: a benchmark of failing requests
    measures nothing.
    """
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        session = requests.Session()
        mine = []
        for _ in range(total // clients):
            started = time.perf_counter()
            error = call(session)
            mine.append(time.perf_counter() - started)
            if error:
                with lock:
                    failures.append(error)
                return
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} clients failed; first: {failures[0]}")
    return time.perf_counter() - started, sorted(latencies)
