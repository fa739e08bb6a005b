"""Every hot path of the bundled server under wrk's load, against the bare-WSGI limit.

In one run, with ``wrk -t2 -c16`` on the same cores as the server (``credenza serve``, the
``[server]`` layout given, SQLite store unless said otherwise):

1. the bare limit: the bare app (:mod:`benchmarks.limit_app`) on gunicorn as
   ``../shared/bench/limit.sh`` runs it (2 workers x 8 threads, one shared socket) and with a
   socket per worker; every ratio is to the higher of the two. The bare app on credenza's own
   layout (granian by default) is printed too, for comparison, not as the divisor;
2. AFP credentials with a warm cache (HTTP Basic, moto's STS behind it);
3. IDaaS ``generateJwt`` (ES256 and a store write) and OAuth ``client_credentials`` (a store
   write), on SQLite and then on PostgreSQL;
4. IDaaS ``validate`` and RFC 7662 ``introspect`` (verification and a store read).

Prints req/s, the ratio to the bare limit, p50 and p99 for each.

    python benchmarks/http_paths.py [--seconds 10] [--paths afp,issue,verify,postgres]
        [--engine granian|gunicorn] [--worker-class gthread|sync] [--workers 2]
        [--threads 8] [--pin-workers auto|always|never] [--worker-connections N]
        [--keepalive 2] [--shared-socket]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import wrk
from credenza.secrets import hash_password, new_api_key
from tests.aws_fixtures import FakeSignin, FaultProxy, local_aws
from tests.conftest import Server, running_server
from tests.pg_fixtures import Postgres

PROVIDER, AUDIENCE, INSTANCE = "bench-bot", "https://api.example.com", "credenza"
PAM = f"/v2/{INSTANCE}/authenticationTokens"
SCOPE = "urn:cloud:idaas:pam|.all"
BODY = json.dumps({"credentialProviderIdentifier": PROVIDER, "subject": "job",
                   "audiences": [AUDIENCE]})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@contextlib.contextmanager
def server(work: Path, args: argparse.Namespace, sts: FaultProxy, signin: FakeSignin,
           store_url: str | None, client: tuple[str, str]) -> Iterator[Server]:
    """``credenza serve`` with static users, aws-sts, jwt and sql, in the layout asked for."""
    work.mkdir()
    (work / "static.yaml").write_text(f"""
users:
  alice: {{password: "{hash_password('PASSWORD')}", grants: ["prod/admin"]}}
oauth_clients:
  bench-app: {{sha256: "{client[1]}", tokens: {{{PROVIDER}: []}}}}
accounts:
  prod: {{id: "111111111111"}}
""")
    sql = f'url = "{store_url}"' if store_url else ""
    (work / "credenza.toml").write_text(f"""
[credenza]
plugins = ["static", "aws-sts", "jwt", "sql"]
data_dir = "data"
[server]
access_log = false
{args.layout.toml()}
[plugins.static]
files = ["static.yaml"]
[plugins.aws-sts]
endpoint_url = "{sts.url}"
access_key_id = "testing"
secret_access_key = "testing-secret"
signin_url = "{signin.url}"
[plugins.jwt]
issuer = "https://credenza.bench"
[plugins.jwt.providers.{PROVIDER}]
audiences = ["{AUDIENCE}"]
[plugins.sql]
{sql}
""")
    with running_server(work, ["--config", str(work / "credenza.toml")]) as running:
        yield running
        running.stop()


def issuance(running: Server, client: tuple[str, str], seconds: float, label: str,
             limit: float) -> None:
    """generateJwt and client_credentials."""
    secret = client[0]
    print(wrk.run(f"{running.url}{PAM}/_/actions/generateJwt", seconds, "POST",
                  _access(running, secret), [BODY]).line(f"generateJwt ({label})", limit),
          flush=True)
    print(wrk.run(f"{running.url}/oauth2/token", seconds, "POST", {
        "Authorization": basic("bench-app", secret),
        "Content-Type": "application/x-www-form-urlencoded"},
        [f"grant_type=client_credentials&scope={SCOPE.replace('|', '%7C')}"]).line(
        f"client_credentials ({label})", limit), flush=True)


def verification(running: Server, client: tuple[str, str], seconds: float,
                 limit: float) -> None:
    """validate and introspect, over fifty JWTs in turn."""
    issued = sample(running, client)
    print(wrk.run(f"{running.url}{PAM}/_/actions/validate", seconds, "POST",
                  {"Content-Type": "application/json"},
                  [json.dumps({"token": token}) for token in issued]).line(
        "validate", limit), flush=True)
    print(wrk.run(f"{running.url}/oauth2/introspect", seconds, "POST", {
        "Authorization": basic("bench-app", client[0]),
        "Content-Type": "application/x-www-form-urlencoded"},
        [f"token={token}" for token in issued]).line("introspect (RFC 7662)", limit),
        flush=True)


def _access(running: Server, secret: str) -> dict[str, str]:
    access = requests.post(running.url + "/oauth2/token", auth=("bench-app", secret),
                           data={"grant_type": "client_credentials", "scope": SCOPE},
                           timeout=10).json()["access_token"]
    return {"Authorization": f"Bearer {access}", "Content-Type": "application/json"}


def sample(running: Server, client: tuple[str, str]) -> list[str]:
    """Fifty JWTs issued by ``running``, to validate and introspect."""
    headers = _access(running, client[0])
    return [requests.post(f"{running.url}{PAM}/_/actions/generateJwt", data=BODY,
                          headers=headers, timeout=10).json()["jwtContent"]["jwtValue"]
            for _ in range(50)]


PATHS = ("afp", "issue", "verify", "postgres")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--engine", default="granian", choices=("granian", "gunicorn"))
    parser.add_argument("--worker-class", default="gthread", choices=("gthread", "sync"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--worker-connections", type=int, default=1000)
    parser.add_argument("--keepalive", type=int, default=2)
    parser.add_argument("--pin-workers", default="auto", choices=("auto", "always", "never"))
    parser.add_argument("--shared-socket", action="store_true",
                        help="reuse_port = false: the workers accept from one socket")
    parser.add_argument("--paths", default=",".join(PATHS),
                        help=f"which of {', '.join(PATHS)} to measure")
    args = parser.parse_args()
    args.layout = wrk.Layout(args.worker_class, args.workers, args.threads,
                             args.worker_connections, args.keepalive, not args.shared_socket,
                             args.engine, args.pin_workers)
    paths = set(args.paths.split(","))
    client = new_api_key("bench-app")

    # The limit is gunicorn's, as ../shared/bench/limit.sh measures it, and the higher of its
    # layout and a socket per worker: a run where connections piled onto one worker of the
    # shared socket shows less than gunicorn can do, and would flatter every ratio.
    bare = {"bare app, limit.sh's layout": wrk.bare_limit(wrk.LIMIT_LAYOUT, args.seconds),
            "bare app, gunicorn, a socket per worker": wrk.bare_limit(wrk.GUNICORN_LAYOUT,
                                                                      args.seconds)}
    rate = max(load.requests_per_second for load in bare.values())
    if args.layout not in (wrk.LIMIT_LAYOUT, wrk.GUNICORN_LAYOUT):
        # Not the divisor: what serving costs on the engine credenza runs on, for comparison.
        bare["bare app, credenza's layout (for comparison)"] = wrk.bare_limit(args.layout,
                                                                              args.seconds)
    print(f"credenza: {args.layout}")
    for label, load in bare.items():
        print(load.line(label, rate), flush=True)
    with tempfile.TemporaryDirectory() as tmp, local_aws() as (sts, signin):
        os.environ.setdefault("CREDENZA__CREDENZA__LOG_LEVEL", "WARNING")
        with server(Path(tmp) / "sqlite", args, sts, signin, None, client) as running:
            if "afp" in paths:
                print(wrk.run(f"{running.url}/account/prod/admin/credentials", args.seconds,
                              headers={"Authorization": basic("alice", "PASSWORD")}).line(
                    "AFP credentials (warm cache)", rate), flush=True)
            if "issue" in paths:
                issuance(running, client, args.seconds, "SQLite", rate)
            if "verify" in paths:
                verification(running, client, args.seconds, rate)
        if "postgres" in paths:
            postgres = Postgres()
            postgres.start()
            try:
                with server(Path(tmp) / "pg", args, sts, signin, postgres.database(),
                            client) as running:
                    issuance(running, client, args.seconds, "PostgreSQL", rate)
            finally:
                postgres.stop()
                shutil.rmtree(postgres.directory, ignore_errors=True)


if __name__ == "__main__":
    main()
