"""LDAP group resolution, cold and warm, and /account throughput with LDAP identity.

Starts a real slapd (as the tests do) and measures, in one run:
- group resolution latency (median, p99) with the cache off (every lookup asks the directory)
  and warm (the cache answers), and their ratio;
- requests/s of ``GET /account`` with HTTP Basic checked against the directory, on the bundled
  server, and of ``GET /status`` (no identity) on the same server as the baseline.

    python benchmarks/ldap_groups.py [--lookups 2000] [--requests 1200] [--clients 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.aws_credentials import load
from credenza.broker import Broker
from credenza.models import Principal
from tests.conftest import running_server
from tests.ldap_fixtures import PASSWORDS, SERVICE_DN, SUFFIX, running_slapd

USERS = ("alice", "bob", "carol", "dave", "erin")


def settings(url: str, ttl: int) -> dict[str, object]:
    return {"url": url, "bind_dn": SERVICE_DN, "bind_password": PASSWORDS["service"],
            "user_base": f"ou=people,{SUFFIX}", "group_base": f"ou=groups,{SUFFIX}",
            "group_patterns": [r"aws-(?P<account>[a-z]+)-(?P<role>[a-z]+)"],
            "nested_groups": True, "cache_ttl_seconds": ttl}


def lookups(broker: Broker, count: int) -> list[float]:
    latencies = []
    for i in range(count):
        principal = Principal(USERS[i % len(USERS)], source="bench")
        started = time.perf_counter()
        broker.enrich(principal)
        latencies.append(time.perf_counter() - started)
    return sorted(latencies)


def describe(label: str, latencies: list[float]) -> float:
    median = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"{label:<34} median {median:8.3f} ms  p99 {p99:8.3f} ms  ({len(latencies)} lookups)")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_slapd(Path(tmp) / "ldap") as slapd:
        cold_broker = Broker.from_config({"credenza": {"plugins": ["ldap"]},
                                          "plugins": {"ldap": settings(slapd.url, 0)}})
        cold = describe("groups, cold (cache off)", lookups(cold_broker, args.lookups))
        warm_broker = Broker.from_config({"credenza": {"plugins": ["ldap"]},
                                          "plugins": {"ldap": settings(slapd.url, 300)}})
        lookups(warm_broker, len(USERS))  # fill the cache
        warm = describe("groups, warm (cached)", lookups(warm_broker, args.lookups))
        print(f"cold / warm median ratio: {cold / warm:.0f}x")

        work = Path(tmp) / "server"
        work.mkdir()
        (work / "accounts.yaml").write_text("accounts: {prod: {id: '111111111111'}, "
                                            "dev: {id: '222222222222'}}\n")
        # JSON strings, numbers, booleans and arrays are TOML values too
        ldap_table = "\n".join(f"{key} = {json.dumps(value)}"
                               for key, value in settings(slapd.url, 60).items())
        (work / "credenza.toml").write_text(
            '[credenza]\nplugins = ["ldap", "static"]\n[server]\nworkers = 2\nthreads = 8\n'
            f'access_log = false\n[plugins.static]\nfiles = ["accounts.yaml"]\n'
            f"[plugins.ldap]\n{ldap_table}\n")
        with running_server(work, ["--config", str(work / "credenza.toml")]) as server:
            alice = ("alice", PASSWORDS["alice"])
            load(server.url + "/status", args.clients * 4, args.clients, None)
            status_s, status = load(server.url + "/status", args.requests, args.clients, None)
            load(server.url + "/account", args.clients * 4, args.clients, alice)  # warm up
            account_s, account = load(server.url + "/account", args.requests, args.clients,
                                      alice)
            server.stop()
        status_rate, account_rate = len(status) / status_s, len(account) / account_s
        print(f"{'GET /status (baseline)':<34} {status_rate:8.1f} req/s  "
              f"p50 {statistics.median(status) * 1000:6.1f} ms")
        print(f"{'GET /account, LDAP Basic identity':<34} {account_rate:8.1f} req/s  "
              f"p50 {statistics.median(account) * 1000:6.1f} ms")
        print(f"/account / /status throughput ratio: {account_rate / status_rate:.2f}")


if __name__ == "__main__":
    main()
