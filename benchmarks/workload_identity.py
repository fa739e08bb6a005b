"""AWS credentials for a CI job: its OIDC token (plugin oidc) against a static API key.

Serves the workload identity guide's configuration (docs/guides/workload-identity/) with
`credenza serve` (2 workers, 8 threads), moto's STS behind the tests' proxy, and a credenza
instance as the job's OIDC issuer (as tests/test_oidc.py does). The same request, container
credentials for ``prod/deployer`` with a warm credential cache, is made with a static API key
(the baseline, measured in the same run) and with a GitHub-shaped OIDC token as the bare
``Authorization`` value boto3's container provider sends. The two alternate, twice each, so that
the machine's drift shows; the ratio is of the medians.

    python benchmarks/workload_identity.py [--requests 1200] [--clients 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.loadgen import concurrently
from credenza.secrets import new_api_key
from tests.aws_fixtures import local_aws
from tests.conftest import running_server
from tests.test_oidc import GUIDE, PlatformIssuer, github_claims, guide_environ

PATH = "/v1/container-credentials/prod/deployer"


def measure(url: str, authorization: str, args: argparse.Namespace) -> dict[str, float]:
    """Requests per second and latency percentiles of ``PATH`` with this Authorization."""
    def get(session: requests.Session) -> str | None:
        response = session.get(url + PATH, headers={"Authorization": authorization},
                               timeout=30)
        return None if response.status_code == 200 else (
            f"{response.status_code} {response.text[:300]}")

    concurrently(args.clients * 4, args.clients, get)  # warm up: workers, caches, keys
    seconds, latencies = concurrently(args.requests, args.clients, get)
    return {"requests_per_s": len(latencies) / seconds,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, local_aws() as (proxy, _signin):
        work = Path(tmp)
        github, cluster = PlatformIssuer(work / "github"), PlatformIssuer(work / "cluster")
        key, digest = new_api_key("deploy-key")
        keys = work / "keys.yaml"
        keys.write_text(f'api_keys:\n  deploy-key:\n    sha256: "{digest}"\n'
                        f'    grants: ["prod/deployer"]\n')
        env = guide_environ(work / "data", github, cluster, proxy,
                            CREDENZA__PLUGINS__STATIC__FILES=json.dumps(["accounts.yaml",
                                                                         str(keys)]),
                            CREDENZA__SERVER__WORKERS="2", CREDENZA__SERVER__THREADS="8",
                            CREDENZA__SERVER__ACCESS_LOG="false")
        # a job token that stays valid through the run (GitHub's live minutes, too)
        token = github.mint(github_claims(github))
        try:
            with running_server(work, ["--config", str(GUIDE / "credenza.toml")],
                                env=env) as server:
                runs: dict[str, list[dict[str, float]]] = {"static API key (baseline)": [],
                                                           "OIDC token": []}
                for _ in range(2):
                    runs["static API key (baseline)"].append(measure(server.url, key, args))
                    runs["OIDC token"].append(measure(server.url, token, args))
        finally:
            github.stop()
            cluster.stop()
    medians = {label: statistics.median(run["requests_per_s"] for run in measured)
               for label, measured in runs.items()}
    for label, measured in runs.items():
        figures = "  ".join(f"{run['requests_per_s']:7.1f} req/s p50 {run['p50_ms']:5.1f} ms "
                            f"p99 {run['p99_ms']:5.1f} ms" for run in measured)
        print(f"{label:<26} {figures}")
    baseline = medians["static API key (baseline)"]
    print(f"ratio OIDC token / static API key: {medians['OIDC token'] / baseline:.2f}x")


if __name__ == "__main__":
    main()
