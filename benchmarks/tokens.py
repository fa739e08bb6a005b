"""Token issuance, validation and listing, against raw PyJWT with the same key and algorithm.

In one run:
1. the baseline: raw PyJWT signing and verifying (ES256, a loaded key) in this process;
2. HTTP issuance through the bundled server (IDaaS ``generateJwt``: authorization, signing and
   the store write), validation (``validate``: verification and the store lookup) and RFC 7662
   introspection (client authentication, verification, the store lookup);
   OAuth client-credentials issuance and rotating refresh (``/oauth2/token``);
3. list latency (``authenticationTokens``, a page of 20 with totalCount) with 10 000 and then
   1 000 000 tokens in the store (SQLite, the embedded default).
Prints each figure and its ratio to the raw baseline.

    python benchmarks/tokens.py [--requests 1000] [--clients 8] [--large 1000000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jwt
import requests
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.loadgen import concurrently
from credenza.plugins.sql import tokens as tokens_table
from credenza.secrets import new_api_key, new_token_id
from tests.conftest import issuing_config, running_server

PROVIDER, AUDIENCE, INSTANCE = "bench-bot", "https://api.example.com", "credenza"


def raw_baseline(count: int) -> tuple[float, float, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    claims = {"iss": "https://credenza.bench", "sub": "job", "aud": [AUDIENCE],
              "iat": int(time.time()), "exp": int(time.time()) + 3600, "jti": "x"}
    started = time.perf_counter()
    token = ""
    for _ in range(count):
        token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k"})
    sign = (time.perf_counter() - started) / count
    public = key.public_key()
    started = time.perf_counter()
    for _ in range(count):
        jwt.decode(token, public, algorithms=["ES256"], audience=AUDIENCE)
    verify = (time.perf_counter() - started) / count
    return sign, verify, token


def fill_store(database: Path, count: int, consumers: int) -> None:
    """Bulk-insert ``count`` token records, spread over ``consumers`` consumers."""
    engine = sa.create_engine(f"sqlite:///{database}")
    now = int(time.time() * 1000)
    with engine.begin() as conn:
        batch = []
        for i in range(count):
            batch.append({
                "token_id": new_token_id(), "token_type": "jwt", "provider": PROVIDER,
                "consumer_type": "application", "consumer_id": f"consumer-{i % consumers}",
                "creator_type": "client", "creator_id": "filler", "issued_at": now,
                "expires_at": now + 3_600_000, "updated_at": None, "revoked": False,
                "claims": '{"sub":"filler"}'})
            if len(batch) == 20_000:
                conn.execute(tokens_table.insert(), batch)
                batch.clear()
        if batch:
            conn.execute(tokens_table.insert(), batch)
    engine.dispose()


def line(label: str, seconds_per_op: float, baseline: float | None = None) -> None:
    ratio = f"  {seconds_per_op / baseline:7.1f}x the raw baseline" if baseline else ""
    print(f"{label:<48} {seconds_per_op * 1e3:9.3f} ms/op  {1 / seconds_per_op:9.0f} op/s{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()

    sign, verify, _ = raw_baseline(2000)
    line("raw PyJWT ES256 sign (baseline)", sign)
    line("raw PyJWT ES256 verify (baseline)", verify)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        secret, digest = new_api_key("bench-app")
        config = issuing_config(work, "bench-app", digest, PROVIDER, AUDIENCE)
        with running_server(work, ["--config", str(config)]) as server:
            access = requests.post(server.url + "/oauth2/token", auth=("bench-app", secret),
                                   data={"grant_type": "client_credentials",
                                         "scope": "urn:cloud:idaas:pam|.all"},
                                   timeout=10).json()["access_token"]
            headers = {"Authorization": f"Bearer {access}"}
            base = f"{server.url}/v2/{INSTANCE}/authenticationTokens"
            body = json.dumps({"credentialProviderIdentifier": PROVIDER, "subject": "job",
                               "audiences": [AUDIENCE]})
            issued: list[str] = []

            def generate(session: requests.Session) -> str | None:
                answer = session.post(f"{base}/_/actions/generateJwt", data=body,
                                      headers={**headers, "Content-Type": "application/json"},
                                      timeout=30)
                if answer.status_code != 200:
                    return f"{answer.status_code} {answer.text[:200]}"
                issued.append(answer.json()["jwtContent"]["jwtValue"])
                return None

            concurrently(args.clients * 5, args.clients, generate)  # warm up
            seconds, latencies = concurrently(args.requests, args.clients, generate)
            line(f"HTTP generateJwt, {args.clients} clients (per request)",
                 seconds / len(latencies), sign)
            print(f"{'':<48} p50 {statistics.median(latencies) * 1e3:.1f} ms, "
                  f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1e3:.1f} ms")

            def client_credentials(session: requests.Session) -> str | None:
                answer = session.post(server.url + "/oauth2/token", auth=("bench-app", secret),
                                      data={"grant_type": "client_credentials",
                                            "scope": "urn:cloud:idaas:pam|.all"}, timeout=30)
                return None if answer.status_code == 200 else answer.text[:200]

            seconds, latencies = concurrently(args.requests, args.clients, client_credentials)
            line(f"HTTP client_credentials, {args.clients} clients", seconds / len(latencies),
                 sign)

            def rotate(session: requests.Session) -> str | None:
                # each client walks its own refresh chain: one rotation per request
                chain = getattr(session, "refresh", None)
                if chain is None:
                    started = client_credentials_answer(session)
                    chain = started["refresh_token"]
                answer = session.post(server.url + "/oauth2/token", auth=("bench-app", secret),
                                      data={"grant_type": "refresh_token",
                                            "refresh_token": chain}, timeout=30)
                if answer.status_code != 200:
                    return answer.text[:200]
                session.refresh = answer.json()["refresh_token"]  # type: ignore[attr-defined]
                return None

            def client_credentials_answer(session: requests.Session) -> dict:
                return session.post(server.url + "/oauth2/token", auth=("bench-app", secret),
                                    data={"grant_type": "client_credentials",
                                          "scope": "urn:cloud:idaas:pam|.all"},
                                    timeout=30).json()

            seconds, latencies = concurrently(args.requests, args.clients, rotate)
            line(f"HTTP refresh_token rotation, {args.clients} clients",
                 seconds / len(latencies), sign)

            sample = issued[:200]

            def validate(session: requests.Session) -> str | None:
                token = sample[int(time.perf_counter() * 1e6) % len(sample)]
                answer = session.post(f"{base}/_/actions/validate",
                                      json={"token": token}, timeout=30)
                ok = answer.status_code == 200 and answer.json()["active"] is True
                return None if ok else f"{answer.status_code} {answer.text[:200]}"

            seconds, latencies = concurrently(args.requests, args.clients, validate)
            line(f"HTTP validate, {args.clients} clients (per request)",
                 seconds / len(latencies), verify)

            def introspect(session: requests.Session) -> str | None:
                token = sample[int(time.perf_counter() * 1e6) % len(sample)]
                answer = session.post(server.url + "/oauth2/introspect", timeout=30,
                                      auth=("bench-app", secret), data={"token": token})
                ok = answer.status_code == 200 and answer.json()["active"] is True
                return None if ok else f"{answer.status_code} {answer.text[:200]}"

            seconds, latencies = concurrently(args.requests, args.clients, introspect)
            line(f"HTTP introspect (RFC 7662), {args.clients} clients",
                 seconds / len(latencies), verify)

            def lister(session: requests.Session) -> str | None:
                answer = session.get(base, headers=headers, timeout=60, params={
                    "consumerId": "bench-app", "credentialProviderIdentifier": PROVIDER,
                    "maxResults": 20})
                return None if answer.status_code == 200 else answer.text[:200]

            database = work / "data" / "tokens.sqlite3"
            for total in (10_000, args.large):
                have = sa.create_engine(f"sqlite:///{database}").connect().execute(
                    sa.text("SELECT count(*) FROM credenza_tokens")).scalar()
                started = time.perf_counter()
                fill_store(database, total - have, consumers=1000)
                filled = time.perf_counter() - started
                _, latencies = concurrently(200, 1, lister)
                print(f"list a page of 20 with {total:>9,} tokens stored: "
                      f"p50 {statistics.median(latencies) * 1e3:7.2f} ms, "
                      f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1e3:7.2f} ms "
                      f"({statistics.median(latencies) / verify:.0f}x a raw verify; "
                      f"filled in {filled:.0f} s)")
            server.stop()


if __name__ == "__main__":
    main()
