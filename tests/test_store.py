"""The token store suite, run against SQLite (the embedded default) and a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from credenza.errors import ConfigError, Unavailable
from credenza.models import TokenQuery, TokenRecord, utcnow
from credenza.plugins import sql
from credenza.plugins.sql import SqlTokenStore, schema_version
from credenza.secrets import new_token_id
from tests.pg_fixtures import Postgres
from tests.store_fixtures import make_store


def record(consumer: str = "app", provider: str = "bot", minutes: int = 60,
           revoked: bool = False) -> TokenRecord:
    now = utcnow().replace(microsecond=0)
    return TokenRecord(new_token_id(), "jwt", provider, "application", consumer, "client",
                       consumer, now, now + dt.timedelta(minutes=minutes),
                       claims={"sub": "s", "aud": ["a"], "n": 1}, revoked=revoked)


def test_add_get_and_find_by_secret_hash(store: SqlTokenStore) -> None:
    first = record()
    digest = hashlib.sha256(b"opaque secret").digest()
    store.add(first, [digest])
    assert store.get(first.token_id) == first
    assert dict(store.get(first.token_id).claims) == {"sub": "s", "aud": ["a"], "n": 1}
    assert store.find(digest) == first
    assert store.find(hashlib.sha256(b"other").digest()) is None
    assert store.get("at_missing") is None


def test_keyset_pages_filters_and_totals(store: SqlTokenStore) -> None:
    mine = [record() for _ in range(7)]
    revoked = [record(revoked=True) for _ in range(2)]
    expired = [record(minutes=-5)]
    for item in [*mine, *revoked, *expired, record(consumer="other"), record(provider="x")]:
        store.add(item)
    now = utcnow()
    everything = TokenQuery("app", "bot")
    seen, after = [], None
    while True:
        page, more, total = store.list(everything, 4, after, now)
        seen.extend(page)
        assert total == 10
        if not more:
            break
        after = page[-1].token_id
    assert [r.token_id for r in seen] == sorted(r.token_id for r in [*mine, *revoked, *expired])
    live = store.list(TokenQuery("app", "bot", revoked=False, expired=False), 50, None, now)
    assert {r.token_id for r in live[0]} == {r.token_id for r in mine} and live[2] == 7
    assert store.list(TokenQuery("app", "bot", revoked=True), 50, None, now)[2] == 2
    assert store.list(TokenQuery("app", "bot", expired=True), 50, None, now)[0] == expired


def test_revocation_by_id_and_by_consumer(store: SqlTokenStore) -> None:
    items = [record() for _ in range(3)]
    for item in items:
        store.add(item)
    at = utcnow()
    assert store.set_revoked([items[0].token_id], True, at) == 1
    assert store.set_revoked([items[0].token_id], True, at) == 0  # already revoked
    assert store.get(items[0].token_id).revoked
    assert store.get(items[0].token_id).updated_at is not None
    assert sorted(store.token_ids("app", "bot")) == sorted(i.token_id for i in items)
    assert store.set_revoked(store.token_ids("app", "bot"), True, at) == 2
    assert store.set_revoked(store.token_ids("app", "bot"), False, at) == 3


def test_purge_removes_only_long_expired_records(store: SqlTokenStore) -> None:
    old, recent, live = record(minutes=-60 * 24 * 40), record(minutes=-5), record()
    for item in (old, recent, live):
        store.add(item, [hashlib.sha256(item.token_id.encode()).digest()])
    assert store.purge(utcnow() - dt.timedelta(days=30)) == 1
    assert store.get(old.token_id) is None
    assert store.find(hashlib.sha256(old.token_id.encode()).digest()) is None
    assert store.get(recent.token_id) and store.get(live.token_id)


def test_schema_is_versioned_and_migrations_are_idempotent(
        backend: tuple[str | None, Path]) -> None:
    first = make_store(*backend)
    first.add(record())
    assert first.migrate() == 2
    second = make_store(*backend)  # a second replica or a restart: nothing to do, nothing lost
    assert len(second.token_ids("app", "bot")) == 1
    with second.engine.begin() as conn:
        conn.execute(schema_version.insert().values(version=99))
    with pytest.raises(ConfigError, match="has schema version 99; this credenza knows up to 2"):
        second.migrate()
    first.close()
    second.close()


def test_a_version_1_store_gains_the_shared_cache_and_keeps_its_tokens(
        backend: tuple[str | None, Path]) -> None:
    old = make_store(*backend)
    kept = record()
    old.add(kept)
    with old.engine.begin() as conn:  # as the previous release left it
        conn.execute(sa.text("DROP TABLE credenza_cache"))
        conn.execute(schema_version.delete().where(schema_version.c.version == 2))
    old.close()
    upgraded = make_store(*backend)
    assert upgraded.get(kept.token_id) == kept
    key = hashlib.sha256(b"k").digest()
    upgraded.cache_put(key, b"sealed", utcnow() + dt.timedelta(hours=1), "me")
    assert upgraded.cache_get(key) == b"sealed"
    upgraded.close()


def test_concurrent_writers_lose_nothing(backend: tuple[str | None, Path]) -> None:
    stores = [make_store(*backend) for _ in range(2)]  # two processes' engines on one database
    errors: list[Exception] = []

    def write(store: SqlTokenStore) -> None:
        try:
            for _ in range(25):
                store.add(record())
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in stores for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(stores[0].token_ids("app", "bot")) == 100
    for store in stores:
        store.close()


def test_sqlite_is_wal_in_the_data_directory(tmp_path: Path) -> None:
    store = make_store(None, tmp_path)
    assert (tmp_path / "tokens.sqlite3").exists()
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
    store.close()


def test_postgres_down_is_503_and_comes_back(postgres: Postgres, tmp_path: Path) -> None:
    store = make_store(postgres.database(), tmp_path)
    item = record()
    store.add(item)
    postgres.stop()
    try:
        with pytest.raises(Unavailable, match=r"the token store at postgresql\+psycopg://"
                                              r"postgres@127\.0\.0\.1:\d+/t\d+ is unavailable"):
            store.get(item.token_id)
        assert not store.health().ok
    finally:
        postgres.resume()
    assert store.get(item.token_id) == item  # the pool reconnects by itself
    store.close()


def test_purge_runs_at_start_and_from_the_command_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    store = make_store(None, tmp_path)
    old = record(minutes=-60 * 24 * 40)
    store.add(old)
    store.close()
    assert make_store(None, tmp_path).get(old.token_id) is None  # purged when it started
    again = make_store(None, tmp_path)
    again.add(record(minutes=-60 * 24 * 40))
    again.close()
    config = tmp_path / "c.toml"
    config.write_text(f"[credenza]\nplugins = ['sql']\ndata_dir = '{tmp_path}'\n")
    result = subprocess.run([sys.executable, "-m", "credenza", "--config", str(config), "tokens",
                             "purge"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("purged 1 expired token records from sqlite:///")


def _held(store: SqlTokenStore) -> tuple[threading.Event, threading.Thread]:
    """A write that leads and holds its transaction open until the returned event is set."""
    gate, entered = threading.Event(), threading.Event()

    def hold(conn: sa.Connection) -> None:
        entered.set()
        gate.wait(30)

    leader = threading.Thread(target=store.writer.write, args=("hold", hold))
    leader.start()
    assert entered.wait(10)
    return gate, leader


def _until(condition: Callable[[], bool]) -> None:
    """Wait (by events of other threads, not by time) until ``condition`` holds."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        threading.Event().wait(0.001)


def _queue_behind(store: SqlTokenStore, gate: threading.Event, leader: threading.Thread,
                  write: Callable[[TokenRecord], None], items: list[TokenRecord]) -> None:
    """``write`` each item in its own thread, queued behind the held leader; then let go."""
    threads = [threading.Thread(target=write, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    _until(lambda: store.writer.waiting == len(items))
    gate.set()
    for thread in [leader, *threads]:
        thread.join(10)


def test_writes_queued_behind_a_commit_commit_together(store: SqlTokenStore) -> None:
    commits: list[int] = []
    sa.event.listen(store.writer.engine, "commit", lambda conn: commits.append(1))
    gate, leader = _held(store)
    records = [record() for _ in range(10)]
    _queue_behind(store, gate, leader, store.add, records)
    assert len(commits) == 2  # the held one, then the ten queued behind it in one
    assert all(store.get(item.token_id) == item for item in records)


def test_a_write_failing_on_its_own_fails_alone(store: SqlTokenStore) -> None:
    existing = record()
    store.add(existing)
    gate, leader = _held(store)
    good = [record() for _ in range(3)]
    outcomes: dict[str, Exception | None] = {}

    def add(item: TokenRecord) -> None:
        try:
            store.add(item)
            outcomes[item.token_id] = None
        except Exception as exc:
            outcomes[item.token_id + "-dup" if item is existing else item.token_id] = exc

    _queue_behind(store, gate, leader, add, [*good, existing])
    driver = store.engine.dialect.loaded_dbapi  # the hot statements run on the driver
    assert isinstance(outcomes[existing.token_id + "-dup"], driver.IntegrityError)
    assert all(outcomes[item.token_id] is None for item in good)
    assert all(store.get(item.token_id) == item for item in good)


def test_a_write_not_committed_in_time_is_503_and_withdrawn(tmp_path: Path) -> None:
    store = make_store(None, tmp_path, write_wait_seconds=1)
    gate, leader = _held(store)
    late = record()
    with pytest.raises(Unavailable, match="no commit within 1 s"):
        store.add(late)
    gate.set()
    leader.join(10)
    store.add(record())  # the writer carries on
    assert store.get(late.token_id) is None
    store.close()


def test_a_postgres_restart_between_reads_goes_unnoticed(postgres: Postgres,
                                                        tmp_path: Path) -> None:
    """Hot reads skip the ping on checkout: a pooled connection the restart dropped is
    replaced and the read retried, not answered 503."""
    store = make_store(postgres.database(), tmp_path)
    item = record()
    store.add(item)
    assert store.get(item.token_id) == item  # a pooled read connection now exists
    postgres.stop()
    postgres.resume()
    try:
        assert store.get(item.token_id) == item
        assert store.find(b"\0" * 32) is None
    finally:
        store.close()


def test_postgres_connections_are_opened_once_under_load(postgres: Postgres,
                                                       tmp_path: Path) -> None:
    """A connection opened past the pool's core was closed when it came back: under load each
    such read opened a new server connection first (a process on the server), and issuance on
    PostgreSQL had a slow tail of up to a second."""
    store = make_store(postgres.database(), tmp_path)
    for engine in (store.engine, store.reader):  # reads by key, and transactions
        opened: list[object] = []
        sa.event.listen(engine, "connect",
                        lambda connection, _record, opened=opened: opened.append(connection))
        for burst in range(3):  # 12 threads at once, and a lull
            held = [engine.raw_connection() for _ in range(12)]
            for connection in held:
                connection.close()
            if burst == 0:
                first = len(opened)
        assert 0 < first <= 12
        assert len(opened) == first  # the later bursts found them all in the pool
    item = record()
    store.add(item)
    assert store.get(item.token_id) == item
    store.close()


def test_sqlite_reads_see_every_commit_from_any_number_of_threads(tmp_path: Path) -> None:
    """Each thread keeps its own read connection: more threads than the pool holds read at
    once, and a thread's kept connection reads what another store (process) committed since
    its last read."""
    store, other = make_store(None, tmp_path), make_store(None, tmp_path)
    first = record()
    store.add(first)
    seen: list[TokenRecord | None] = []
    later: list[TokenRecord] = []
    ready, added = threading.Barrier(25), threading.Event()

    def read() -> None:
        seen.append(store.get(first.token_id))
        ready.wait(10)
        added.wait(10)
        seen.append(store.get(later[0].token_id))

    threads = [threading.Thread(target=read) for _ in range(24)]
    for thread in threads:
        thread.start()
    ready.wait(10)  # every thread has read once, on a connection it keeps
    later.append(record())
    other.add(later[0])
    added.set()
    for thread in threads:
        thread.join(10)
    assert seen.count(first) == 24 and seen.count(later[0]) == 24
    store.close()
    other.close()


def test_a_sqlite_read_connection_that_fails_is_opened_again(tmp_path: Path) -> None:
    store = make_store(None, tmp_path)
    item = record()
    store.add(item)
    assert store.find(b"\0" * 32) is None  # the thread's connection is open

    class Failing:  # the kept connection, as a disk error leaves it
        def cursor(self) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        def close(self) -> None:
            closed.append(self)

    closed: list[object] = []

    store._thread_reader.connection = (os.getpid(), Failing())
    with pytest.raises(Unavailable):
        store.get(item.token_id)
    assert len(closed) == 1
    assert store.get(item.token_id) == item  # the next read opens the file again
    store.close()


def test_the_write_ahead_log_is_checkpointed_off_the_write_path(tmp_path: Path) -> None:
    """Commits do not checkpoint (SQLite's default made one commit in ~200 wait for fsyncs);
    the checkpointer's thread does, and the log does not grow with every write."""
    store = make_store(None, tmp_path)
    checkpointer = store.writer.checkpointer
    assert checkpointer is not None
    with store.writer.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    written = [record() for _ in range(checkpointer.EVERY * 16)]
    for item in written:
        store.add(item)
    assert checkpointer.done >= 1 and checkpointer.restarts >= 1
    # each commit appends 5+ pages to the log: it would hold ~24,000 (100 MB) by now if
    # passive checkpoints alone kept it (they cannot start it afresh while writes go on);
    # restarted, it holds the limit and what was written while the thread caught up
    pages = (tmp_path / "tokens.sqlite3-wal").stat().st_size // 4096
    assert pages < 4 * checkpointer.LOG_LIMIT
    assert store.get(written[0].token_id) == written[0]
    store.close()
    assert not any(thread.name == "credenza-checkpoint" and thread.is_alive()
                   for thread in threading.enumerate())


def test_restarting_the_log_does_not_wait_for_a_reader(tmp_path: Path) -> None:
    """A reader still on the old log (a backup, a long listing) makes the writer's restart of
    the log a try for later, not a wait of writers behind SQLite's busy timeout."""
    store = make_store(None, tmp_path)
    store.add(record())
    reader = sqlite3.connect(tmp_path / "tokens.sqlite3", isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM credenza_tokens").fetchone() == (1,)
    store.add(record())  # the log now has a frame the reader's snapshot does not see
    store.writer.checkpointer._restart_due = True  # as the thread sets it past LOG_LIMIT
    started = time.monotonic()
    item = record()
    store.add(item)
    assert time.monotonic() - started < sql.WRITER_LOCK_WAIT / 2
    assert store.get(item.token_id) == item
    reader.execute("COMMIT")
    reader.close()
    store.close()


def test_a_change_by_another_process_is_seen_at_the_next_read(tmp_path: Path) -> None:
    """Records read lately are remembered while no process has changed a stored record: a
    revocation, reinstatement or purge by another process is seen by the very next read."""
    store = make_store(None, tmp_path)
    store.KNOWN_SECONDS = 3600  # (the other process takes longer to start than the default)
    item, old = record(), record(minutes=-60 * 24 * 40)
    store.add(item)
    store.add(old)
    assert store.get(item.token_id).revoked is False  # now remembered
    assert store.get(old.token_id) == old

    def other_process(code: str) -> None:
        subprocess.run([sys.executable, "-c", f"""
import datetime as dt, sys
sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
from credenza.models import utcnow
from tests.store_fixtures import make_store
store = make_store(None, __import__("pathlib").Path({str(tmp_path)!r}))
{code}
store.close()
"""], check=True, timeout=60)

    other_process(f"store.set_revoked([{item.token_id!r}], True, utcnow())")
    assert store.get(item.token_id).revoked is True
    other_process(f"store.set_revoked([{item.token_id!r}], False, utcnow())")
    assert store.get(item.token_id).revoked is False
    other_process("store.purge(utcnow() - dt.timedelta(days=30))")
    assert store.get(old.token_id) is None
    assert store.get(item.token_id).updated_at is not None  # as stored, reinstated
    assert (tmp_path / "tokens.sqlite3.changes").stat().st_mode & 0o777 == 0o600
    store.close()


def test_an_unknown_token_is_not_remembered_as_unknown(tmp_path: Path) -> None:
    store, other = make_store(None, tmp_path), make_store(None, tmp_path)
    item = record()
    assert store.get(item.token_id) is None
    other.add(item)  # another process issues it: no change of a stored record
    assert store.get(item.token_id) == item
    store.close()
    other.close()
