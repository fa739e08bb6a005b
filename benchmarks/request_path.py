"""The CPU cost of one request on each hot path, in one process, with no network in between.

HTTP benchmarks on a small shared machine move by tens of percent from run to run; this one
calls the WSGI app directly (werkzeug's test client), one request at a time, so what it shows is
what the broker itself costs: decoding the declared inputs, identification, grants, signing,
the store. The baseline, measured in the same run, is a bare WSGI app that answers a small JSON
body through the same client. Prints the median over 5 rounds and the ratio to the baseline.

    python benchmarks/request_path.py [--requests 300]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from credenza.broker import Broker
from credenza.secrets import new_api_key
from credenza.wsgi import make_app

PAM = "/v2/credenza/authenticationTokens"


@Request.application
def bare(request: Request) -> Response:
    """The baseline: a WSGI app that reads its request and answers JSON."""
    return Response('{"active":true}', content_type="application/json")


def per_request(call: Callable[[int], object], requests: int) -> float:
    """Median seconds per call over 5 rounds (after a warm-up)."""
    for i in range(50):
        call(i)
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for i in range(requests):
            call(i)
        rounds.append((time.perf_counter() - started) / requests)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    baseline_client = Client(bare)
    baseline = per_request(lambda i: baseline_client.post("/", json={"token": "x"}),
                           args.requests)
    print(f"{'bare WSGI app (baseline)':<28} {baseline * 1e3:7.3f} ms/request")

    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        key, digest = new_api_key("app")
        (work / "static.yaml").write_text(
            f'oauth_clients:\n  app: {{sha256: "{digest}", tokens: {{bot: []}}}}\n')
        broker = Broker.from_config({
            "credenza": {"plugins": ["static", "jwt", "sql"], "data_dir": str(work)},
            "plugins": {"static": {"files": [str(work / "static.yaml")]},
                        "jwt": {"providers": {"bot": {}}}},
        })
        client = Client(make_app(broker))
        basic = {"Authorization": "Basic " + base64.b64encode(f"app:{key}".encode()).decode()}
        form = {"grant_type": "client_credentials", "scope": "urn:cloud:idaas:pam|.all"}
        access = client.post("/oauth2/token", data=form, headers=basic).get_json()
        bearer = {"Authorization": f"Bearer {access['access_token']}"}
        body = {"credentialProviderIdentifier": "bot", "subject": "job",
                "audiences": ["https://api.example.com"]}
        jwts = [client.post(f"{PAM}/_/actions/generateJwt", json=body, headers=bearer)
                .get_json()["jwtContent"]["jwtValue"] for _ in range(50)]

        def checked(call: Callable[[int], object]) -> Callable[[int], object]:
            def run(i: int) -> object:
                answer = call(i)
                if answer.status_code != 200:  # a benchmark of failures measures nothing
                    raise SystemExit(f"{answer.status_code}: {answer.get_data(as_text=True)}")
                return answer
            return run

        paths = {
            "client_credentials": lambda i: client.post("/oauth2/token", data=form,
                                                        headers=basic),
            "generateJwt": lambda i: client.post(f"{PAM}/_/actions/generateJwt", json=body,
                                                 headers=bearer),
            "validate": lambda i: client.post(f"{PAM}/_/actions/validate",
                                              json={"token": jwts[i % 50]}),
            "introspect": lambda i: client.post("/oauth2/introspect",
                                                data={"token": jwts[i % 50]}, headers=basic),
            "whoami (bearer)": lambda i: client.get("/v1/whoami", headers=bearer),
        }
        for name, call in paths.items():
            seconds = per_request(checked(call), args.requests)
            print(f"{name:<28} {seconds * 1e3:7.3f} ms/request  {seconds / baseline:6.1f}x "
                  "the bare app")
        broker.close()


if __name__ == "__main__":
    main()
