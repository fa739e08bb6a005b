"""Throughput of the credentials endpoint with a warm cache, against caching disabled.

Runs moto's STS behind the counting proxy of the tests, starts `credenza serve` (2 workers,
8 threads each) twice, once with the default cache and once with ``cache_size = 0``, and sends
the same requests from concurrent clients to ``/account/prod/admin/credentials`` (HTTP Basic).
Prints requests/s, latency percentiles, the STS calls each run caused, and the ratios.

    python benchmarks/aws_credentials.py [--requests 1200] [--clients 16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.loadgen import concurrently
from credenza.secrets import hash_password, new_api_key
from tests.aws_fixtures import FakeSignin, FaultProxy, local_aws, write_aws_config
from tests.conftest import running_server

AUTH = ("alice", "PASSWORD")


def load(url: str, total: int, clients: int,
         auth: tuple[str, str] | None = AUTH) -> tuple[float, list[float]]:
    """Send ``total`` GETs to ``url`` from ``clients`` threads; return (seconds, latencies)."""

    def get(session: requests.Session) -> str | None:
        response = session.get(url, auth=auth, timeout=30)
        return None if response.status_code == 200 else (
            f"{url}: {response.status_code} {response.text[:300]}")

    return concurrently(total, clients, get)


def run(label: str, cache: str, args: argparse.Namespace, proxy: FaultProxy,
        signin: FakeSignin, password: str, key: tuple[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        config = write_aws_config(tmp_path, proxy, signin, password, key, aws_sts=cache,
                                  server="workers = 2\nthreads = 8\naccess_log = false")
        with running_server(tmp_path, ["--config", str(config)]) as server:
            url = server.url + "/account/prod/admin/credentials"
            load(url, args.clients * 4, args.clients)  # warm up: workers, password cache
            proxy.reset()
            seconds, latencies = load(url, args.requests, args.clients)
            calls = len(proxy.assume_role_calls())
            server.stop()
    latencies.sort()
    figures = {
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "sts_calls": calls,
    }
    print(f"{label:<22} {len(latencies):>6} requests  {figures['requests_per_s']:8.1f} req/s  "
          f"p50 {figures['p50_ms']:7.1f} ms  p99 {figures['p99_ms']:7.1f} ms  "
          f"STS calls {calls}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    password, key = hash_password("PASSWORD"), new_api_key("bench")
    with local_aws() as (proxy, signin):
        cached = run("warm cache", "", args, proxy, signin, password, key)
        baseline = run("no cache (baseline)", "cache_size = 0", args, proxy, signin, password,
                       key)
    print(f"throughput ratio (cache / no cache): "
          f"{cached['requests_per_s'] / baseline['requests_per_s']:.1f}x")
    print(f"p50 latency ratio (no cache / cache): {baseline['p50_ms'] / cached['p50_ms']:.1f}x")
    print(f"STS calls: {cached['sts_calls']} with cache, {baseline['sts_calls']} without")


if __name__ == "__main__":
    main()
