"""STS calls per burst, and throughput of the credentials endpoint, by kind of cache.

Runs moto's STS behind the counting proxy of the tests and starts `credenza serve` (2 workers,
8 threads each) in four setups:

- ``no cache``: ``cache_size = 0``, the baseline every ratio is against;
- ``per process``: no token store, so each worker caches for itself (credenza before the shared
  cache);
- ``shared, SQLite``: the sql plugin's default store, shared by the two workers;
- ``2 replicas, PG``: two servers of two workers each, on one PostgreSQL database, each with its
  own data directory and the same ``cache_key``.

For each it measures ``--rounds`` bursts (``--burst`` concurrent requests for credentials nobody
holds yet, spread over the servers, while STS answers in 300 ms: how many AssumeRole calls each
burst makes; which worker accepts a connection is the kernel's choice, so per-process caches
make between 1 and "processes" calls), then throughput with a warm cache (``--requests`` from
``--clients`` threads, HTTP Basic).

    python benchmarks/aws_credentials.py [--requests 1200] [--clients 16] [--burst 20]
                                         [--rounds 5]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.loadgen import concurrently
from credenza.secrets import hash_password, new_api_key
from tests.aws_fixtures import FakeSignin, FaultProxy, local_aws, write_aws_config
from tests.conftest import running_server
from tests.pg_fixtures import Postgres

AUTH = ("alice", "PASSWORD")
CACHE_KEY = base64.b64encode(b"benchmark-cache-key-32-bytes-ok!").decode()


@contextlib.contextmanager
def servers(replicas: int, proxy: FaultProxy, signin: FakeSignin, password: str,
            key: tuple[str, str], *, aws_sts: str = "", sql: str | None = None
            ) -> Iterator[list[str]]:
    """``replicas`` servers of 2 workers each, each in its own directory; their base URLs."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        urls = []
        for number in range(replicas):
            directory = Path(tmp) / f"replica{number}"
            directory.mkdir()
            config = write_aws_config(directory, proxy, signin, password, key, aws_sts=aws_sts,
                                      sql=sql, server="workers = 2\nthreads = 8\n"
                                                      "access_log = false")
            urls.append(stack.enter_context(
                running_server(directory, ["--config", str(config)])).url)
        yield urls


def bursts(urls: list[str], proxy: FaultProxy, size: int, rounds: int) -> list[int]:
    """``rounds`` times, ``size`` concurrent requests for credentials nobody holds yet (a new
    duration each round): the AssumeRole calls of each round."""
    calls = []
    for round_number in range(rounds):
        proxy.reset()
        proxy.delay = 0.3
        path = f"/account/prod/viewer/credentials?duration={3600 + 60 * round_number}"

        with ThreadPoolExecutor(size) as pool:
            for response in pool.map(lambda url: requests.get(url, auth=AUTH, timeout=30),
                                     [urls[number % len(urls)] + path for number in range(size)]):
                response.raise_for_status()
        calls.append(len(proxy.assume_role_calls()))
    proxy.reset()
    return calls


def throughput(urls: list[str], args: argparse.Namespace) -> dict[str, float]:
    """Requests per second and latency percentiles with a warm cache."""
    paths = [f"{url}/account/prod/admin/credentials" for url in urls]
    turns = itertools.count()

    def get(session: requests.Session) -> str | None:
        url = paths[next(turns) % len(paths)]
        response = session.get(url, auth=AUTH, timeout=30)
        return None if response.status_code == 200 else (
            f"{url}: {response.status_code} {response.text[:300]}")

    concurrently(args.clients * 4, args.clients, get)  # warm up: workers, password cache
    seconds, latencies = concurrently(args.requests, args.clients, get)
    return {
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    password, key = hash_password("PASSWORD"), new_api_key("bench")
    postgres = Postgres()
    postgres.start()
    setups = [
        ("no cache (baseline)", 1, {"aws_sts": "cache_size = 0"}),
        ("per process", 1, {}),
        ("shared, SQLite", 1, {"sql": ""}),
        ("2 replicas, PG", 2, {"sql": f'url = "{postgres.database()}"',
                               "aws_sts": f'cache_key = "{CACHE_KEY}"'}),
    ]
    figures = {}
    try:
        with local_aws() as (proxy, signin):
            for label, replicas, options in setups:
                with servers(replicas, proxy, signin, password, key, **options) as urls:
                    calls = bursts(urls, proxy, args.burst, args.rounds)
                    measured = throughput(urls, args)
                figures[label] = measured
                processes = replicas * 2
                print(f"{label:<20} {processes} processes  STS calls per burst of {args.burst}: "
                      f"{' '.join(f'{n:>2}' for n in calls)}  "
                      f"{measured['requests_per_s']:8.1f} req/s  "
                      f"p50 {measured['p50_ms']:6.1f} ms  p99 {measured['p99_ms']:6.1f} ms")
    finally:
        postgres.stop()
        shutil.rmtree(postgres.directory, ignore_errors=True)
    baseline = figures["no cache (baseline)"]["requests_per_s"]
    for label, measured in figures.items():
        print(f"throughput ratio {label} / no cache: {measured['requests_per_s'] / baseline:.2f}x")


if __name__ == "__main__":
    main()
