"""The README's tour, run as written: every command, its output checked against what the page
shows (a comment `# {...}` is the start of the answer, up to its `...`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import running_server
from tests.test_example_plugin import acme_site, env_for  # noqa: F401 - acme_site: a fixture

ROOT = Path(__file__).resolve().parent.parent


def tour_blocks() -> list[list[tuple[str, str | None]]]:
    """The tour's shell blocks: (command, the answer the page shows or None) per line."""
    tour = (ROOT / "README.md").read_text().split("## A short tour")[1].split("\n## ")[0]
    blocks = []
    for block in re.findall(r"```sh\n(.*?)```", tour, re.DOTALL):
        steps: list[tuple[str, str | None]] = []
        for line in block.splitlines():
            command, _, comment = line.partition("  #")
            if line.startswith("# "):  # the answer of the line before
                steps[-1] = (steps[-1][0], line[2:].split("...")[0])
                continue
            shown = comment.strip().split("...")[0] if comment.strip().startswith("{") \
                else None
            steps.append((command.strip(), shown))
        blocks.append(steps)
    return blocks


def run(command: str, environ: dict[str, str], url: str, port: int) -> str:
    ran = subprocess.run(["bash", "-c", command.replace(f"http://127.0.0.1:{port}", url)],
                         capture_output=True, text=True, timeout=60, env=environ, cwd=ROOT)
    assert ran.returncode == 0, (command, ran.stdout, ran.stderr)
    return ran.stdout


def test_the_tour_runs_as_written(tmp_path: Path, acme_site: Path) -> None:  # noqa: F811
    first, acme = tour_blocks()
    environ = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"),
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    assert first[0][0] == "credenza serve &"  # this test starts it, on a free port
    with running_server(tmp_path, [], env=environ) as server:
        for command, shown in first[1:]:
            output = run(command, environ, server.url, 8080)
            if shown is not None:
                assert output.startswith(shown), (command, output[:300])
            if "/v1/whoami" in command:
                # header names in any case (HTTP/1.1 leaves it free; granian sends lower case)
                assert output.startswith("HTTP/1.1 401")
                assert "www-authenticate: basic" in output.lower()
            if "openapi.json" in command:
                assert '"openapi":"3.1.0"' in output

    assert acme[0][0] == "pip install ./examples/acme_plugin"  # done by the acme_site fixture
    secret = acme[1][0]
    assert secret == "export ACME_BADGE_SECRET=s3cret"
    acme_environ = {**env_for(acme_site, ACME_BADGE_SECRET="s3cret"),
                    "XDG_DATA_HOME": str(tmp_path / "acme-data"), "PATH": environ["PATH"]}
    serve = acme[2][0]
    assert serve.startswith("credenza --config examples/acme_plugin/acme.toml serve --bind "
                            "127.0.0.1:8081 &")
    with running_server(tmp_path, ["--config", str(ROOT / "examples/acme_plugin/acme.toml")],
                        env=acme_environ) as server:
        script = "\n".join(command for command, _ in acme[3:])
        output = run(script, acme_environ, server.url, 8081)
        assert output.startswith(acme[-1][1]), output[:300]


def test_the_aws_example_lists_what_the_aws_page_shows(tmp_path: Path) -> None:
    """docs/aws.md's /account answer, from examples/aws.toml (no STS needed to list)."""
    from werkzeug.test import Client

    from credenza.broker import Broker
    from credenza.config import Config
    from credenza.wsgi import make_app

    page = (ROOT / "docs" / "aws.md").read_text()
    shown = re.search(r"/account +# (\{.*\})", page).group(1)
    config = Config.load(ROOT / "examples" / "aws.toml",
                         {"CREDENZA__CREDENZA__DATA_DIR": str(tmp_path)})
    answer = Client(make_app(Broker.from_config(config))).get("/account",
                                                                auth=("alice", "change-me"))
    assert answer.get_data(as_text=True) == shown
