"""A throwaway PostgreSQL cluster on loopback (Debian's postgresql), as ../shared/TESTING.md says.

initdb refuses root, so as root the cluster belongs to the ``postgres`` user, in a directory of
its own under /tmp (pytest's temporary directories are private to root).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

_counter = itertools.count()


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    return found[-1]


def _as_postgres(*command: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


class Postgres:
    """One cluster: ``database()`` makes a fresh database and returns its SQLAlchemy URL."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="credenza-pg-"))
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")

    def start(self) -> None:
        data = self.directory / "data"
        subprocess.run(_as_postgres(_bin("initdb"), "-D", str(data), "-U", "postgres", "-A",
                                    "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"),
                       check=True, capture_output=True)
        self.resume()

    def resume(self) -> None:
        """Start the server (again): its output goes to a log, not to the caller's pipes."""
        self.pg_ctl("start", "-l", str(self.directory / "log"), "-o",
                    f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} "
                    "-c fsync=off")

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(_as_postgres(_bin("pg_ctl"), "-D", str(self.directory / "data"), "-w",
                                    *args), check=True, capture_output=True)

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "fast")

    def database(self) -> str:
        import psycopg

        name = f"t{next(_counter)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
