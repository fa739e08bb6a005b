"""The time an AWS SDK waits for ``credential_process`` with warm caches, against a bare Python
interpreter start.

Runs moto's STS, starts `credenza serve` with an identity provider, logs a client in, and runs
the command a profile written by ``credenza aws profile`` runs (``python -m credenza aws creds
prod admin --format process``) after one warm-up call: the client's JWT is cached in its
token_info file and the broker's credential cache holds the role, so each call is a process
start plus one HTTP request. Prints the medians, the ratio to ``python -c pass``, and where
the time goes (the import of the entry point alone: a warm call needs nothing more).

    python benchmarks/credential_process.py [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from credenza.secrets import hash_password, new_api_key
from tests.aws_fixtures import local_aws, write_aws_config
from tests.conftest import running_server

JWT = """
issuer = "https://credenza.bench"
[plugins.jwt.providers.cli]
audiences = ["credenza-cli"]
identity = true
"""


def median_seconds(command: list[str], env: dict[str, str], runs: int) -> float:
    """The median wall time of ``runs`` runs of ``command`` (each must succeed)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {done.stderr}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with local_aws() as (proxy, signin), tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        config = write_aws_config(tmp_path, proxy, signin, hash_password("PASSWORD"),
                                  new_api_key("container-app"), jwt=JWT,
                                  server="workers = 1\naccess_log = false")
        credenza = [sys.executable, "-m", "credenza"]
        with running_server(tmp_path, ["--config", str(config)]) as server:
            made = subprocess.run([*credenza, "--config", str(config), "api-token", "alice",
                                   "--client", "credenza-cli", "--provider", "cli",
                                   "--url", server.url], capture_output=True, text=True,
                                  check=True, cwd=tmp_path)
            blob = made.stdout.split("login blob: ")[1].split()[0]
            # As after a pip install, modules load from bytecode: the first call writes it.
            env = {key: value for key, value in os.environ.items()
                   if not key.startswith(("CREDENZA_", "AWS_", "PYTHONDONTWRITEBYTECODE"))}
            env["CREDENZA_TOKEN_INFO_PATH"] = str(tmp_path / "client" / "token_info.json")
            subprocess.run([*credenza, "login"], input=blob + "\n", env=env, check=True,
                           capture_output=True, text=True)
            process = [*credenza, "aws", "creds", "prod", "admin", "--format", "process"]
            first = subprocess.run(process, env=env, capture_output=True, text=True, check=True)
            assert json.loads(first.stdout)["Version"] == 1
            proxy.reset()
            bare = median_seconds([sys.executable, "-c", "pass"], env, args.runs)
            imports = median_seconds([sys.executable, "-c", "import credenza.entry"], env,
                                     args.runs)
            warm = median_seconds(process, env, args.runs)
            calls = len(proxy.assume_role_calls())
            server.stop()
    print(f"{'python -c pass (baseline)':<34} {bare * 1000:7.1f} ms")
    print(f"{'import credenza.entry':<34} {imports * 1000:7.1f} ms")
    print(f"{'credential_process, warm caches':<34} {warm * 1000:7.1f} ms  "
          f"(STS calls during {args.runs} runs: {calls})")
    print(f"ratio credential_process / bare interpreter: {warm / bare:.1f}x; "
          f"the request and its answer: {(warm - imports) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
