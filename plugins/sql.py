"""Plugin ``sql``: the token store, on SQLAlchemy Core.

Settings (``[plugins.sql]``):

``url``
    A SQLAlchemy URL. Default: a SQLite file ``tokens.sqlite3`` in the data directory (WAL, so
    several broker processes on one host share it). ``postgresql+psycopg://...`` for several
    replicas (install ``credenza[postgres]``); ``env:``/``file:`` references work, since the URL
    usually holds a password.
``purge_after_days``
    Records that expired longer ago than this are deleted (default 30; 0 keeps them forever).
``write_wait_seconds``
    How long a write may wait for its commit before the request is answered 503 (default 10).

Writes go through one writer per process (:class:`Writer`): requests are answered once their
record has committed, many records commit together, and on SQLite the processes take the write
lock in turn, promptly (see its docstring).

The schema is versioned: each start applies the migrations it lacks, in one transaction, under an
advisory lock on PostgreSQL so replicas starting together do not race. Timestamps are stored as
epoch milliseconds, claims as JSON text; secrets never (the table of hashes maps SHA-256 digests
of opaque secrets to their token). The same database holds the shared credential cache
(:class:`credenza.models.SharedCache`): values sealed before they get here, and leases.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import fcntl
import logging
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import click
import msgspec

from credenza import metrics
from credenza.config import Config, Section
from credenza.errors import ConfigError, Unavailable
from credenza.expiring import ExpiringMap
from credenza.health import HealthProbe
from credenza.markers import hookimpl
from credenza.models import (
    UTC,
    Health,
    TokenQuery,
    TokenRecord,
    TokenStore,
    utcnow,
)
from credenza.secrets import private_directory
from credenza.settings import read, setting

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.engine import Connection, Engine
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(f"plugin sql needs SQLAlchemy: pip install credenza ({exc})") from exc

log = logging.getLogger(__name__)

NAME = "sql"

metadata = sa.MetaData()
schema_version = sa.Table(
    "credenza_schema", metadata,
    sa.Column("version", sa.Integer, nullable=False),
)
tokens = sa.Table(
    "credenza_tokens", metadata,
    sa.Column("token_id", sa.String(64), primary_key=True),
    sa.Column("token_type", sa.String(32), nullable=False),
    sa.Column("provider", sa.String(128), nullable=False),
    sa.Column("consumer_type", sa.String(32), nullable=False),
    sa.Column("consumer_id", sa.String(256), nullable=False),
    sa.Column("creator_type", sa.String(32), nullable=False),
    sa.Column("creator_id", sa.String(256), nullable=False),
    sa.Column("issued_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=True),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
    sa.Column("claims", sa.Text, nullable=False),
    sa.Index("credenza_tokens_consumer", "consumer_id", "provider", "token_id"),
    sa.Index("credenza_tokens_provider", "provider", "token_id"),
    sa.Index("credenza_tokens_expiry", "expires_at"),
)
secrets_table = sa.Table(
    "credenza_token_secrets", metadata,
    sa.Column("secret_hash", sa.LargeBinary(32), primary_key=True),
    sa.Column("token_id", sa.String(64), sa.ForeignKey("credenza_tokens.token_id",
                                                       ondelete="CASCADE"),
              nullable=False, index=True),
)


# The shared credential cache (credenza.sharedcache): values sealed by the process that stored
# them, keyed by a SHA-256 digest, and each key's lease. A row may hold a lease and no value yet.
cache = sa.Table(
    "credenza_cache", metadata,
    sa.Column("key", sa.LargeBinary(32), primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=True),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Column("lease_holder", sa.String(128), nullable=True),
    sa.Column("lease_until", sa.BigInteger, nullable=True),
)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[tokens, secrets_table])


def _v2(conn: Connection) -> None:
    metadata.create_all(conn, tables=[cache])


# Each migration brings the schema from its index to index + 1; append, never edit.
MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2]


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _moment(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, UTC)


def _record(row: Any) -> TokenRecord:
    return TokenRecord(
        token_id=row.token_id, token_type=row.token_type, provider=row.provider,
        consumer_type=row.consumer_type, consumer_id=row.consumer_id,
        creator_type=row.creator_type, creator_id=row.creator_id,
        issued_at=_moment(row.issued_at), expires_at=_moment(row.expires_at),
        updated_at=_moment(row.updated_at), revoked=bool(row.revoked),
        claims=msgspec.json.decode(row.claims),
    )


_Row = collections.namedtuple("_Row", [column.name for column in tokens.c])  # type: ignore[misc]


class Prepared:
    """A hot statement compiled once for one engine's dialect and run on the driver's own
    connection: SQLAlchemy's per-call statement building, cache key and result rows cost more
    than a lookup by key itself (a SQLite read by token id: ~130 µs through SQLAlchemy Core and
    a transaction, ~40 µs on a pooled driver connection). Errors are the driver's (see
    :attr:`SqlTokenStore.down`)."""

    def __init__(self, engine: Engine, statement: Any) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self._names = compiled.positiontup  # None where the driver takes named parameters

    def _parameters(self, values: dict[str, Any]) -> Any:
        return values if self._names is None else tuple(values[name] for name in self._names)

    def rows(self, connection: Any, **values: Any) -> list[tuple[Any, ...]]:
        """The rows the statement selects, on a driver connection (pooled or kept)."""
        cursor = connection.cursor()
        try:
            cursor.execute(self.sql, self._parameters(values))
            return cursor.fetchall()
        finally:
            cursor.close()

    def run(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Execute the statement once per row of parameters."""
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(self.sql, [self._parameters(row) for row in rows])
        finally:
            cursor.close()


class Writer:
    """The one path by which a process writes: many records commit together in one transaction
    (group commit), each caller is answered once its own has committed, and the database's
    write lock is taken once per batch.

    There is no writer thread to hand work to: a caller that finds nobody writing leads, and
    commits what is queued, its own write first; callers arriving meanwhile queue and wait.
    When the leader has committed, it passes the lead to the first of them, who commits all that
    queued since. Alone, a write costs what it did before; under load, one transaction carries
    many.

    On SQLite the leader takes the lock at once (``BEGIN IMMEDIATE``), and the processes
    sharing the file take turns through a file lock, which wakes the next one as soon as it is
    free: SQLite's own busy handler polls in growing sleeps, and writers of several processes
    and threads queued on it made the slow tail of issuance (a convoy). The writer keeps its
    SQLite connection between batches (a pool checkout and return cost more than a commit).
    On PostgreSQL there is no file lock, so replicas write side by side, and each batch checks
    a connection out of the pool, which replaces one the server dropped.

    A batch whose transaction fails for the database's sake (down, locked too long) fails every
    caller in it with :class:`~credenza.errors.Unavailable`; one whose work fails for its own
    sake (a constraint) is retried one by one, so only that caller sees its error.
    """

    #: most writes in one transaction
    MAX_BATCH = 64

    def __init__(self, engine: Engine, lock_path: Path | None, wait_seconds: float,
                 unavailable: Callable[[Exception], Unavailable],
                 down: tuple[type[Exception], ...],
                 checkpointer: Checkpointer | None = None) -> None:
        self.engine = engine
        self.checkpointer = checkpointer
        self._down = down
        self._lock_path = lock_path
        self._lock_file: tuple[int, Any] | None = None  # (pid, open file) of the file lock
        self._kept: tuple[int, Connection] | None = None  # (pid, connection) on SQLite
        self._wait = wait_seconds
        self._unavailable = unavailable
        self._mutex = threading.Lock()
        self._queued: list[_Write] = []
        self._leading = False

    @property
    def waiting(self) -> int:
        """How many writes are queued for the next commit."""
        with self._mutex:
            return len(self._queued)

    def write(self, operation: str, work: Callable[[Connection], Any]) -> Any:
        """Run ``work`` in a write transaction; its result once that has committed.

        :raises Unavailable: when the database cannot be written within the wait.
        """
        job = _Write(operation, work)
        with self._mutex:
            self._queued.append(job)
            job.lead, self._leading = not self._leading, True
        if not job.lead and not job.woken.wait(self._wait):
            with self._mutex:
                if job in self._queued:  # not taken: withdraw it
                    self._queued.remove(job)
                    raise self._unavailable(TimeoutError(f"no commit within {self._wait:g} s"))
            job.woken.wait()  # taken into a batch, or handed the lead: it is on its way
        if job.lead:
            self._lead()
        if job.error is not None:
            raise job.error
        return job.result

    def _lead(self) -> None:
        with self._mutex:
            batch = self._queued[:self.MAX_BATCH]
            del self._queued[:self.MAX_BATCH]
        try:
            self._commit(batch)
        finally:
            with self._mutex:
                if self._queued:
                    successor = self._queued[0]
                    successor.lead = True
                    successor.woken.set()
                else:
                    self._leading = False
            for job in batch:
                job.woken.set()

    def _commit(self, batch: list[_Write]) -> None:
        try:
            with self._turn():
                try:
                    self._transaction(batch)
                except self._down:
                    raise
                except Exception:  # one job's own fault (a constraint): each on its own
                    if len(batch) == 1:
                        raise
                    for job in batch:
                        self._commit([job])
        except Exception as exc:  # each caller raises it
            error = self._unavailable(exc) if isinstance(exc, (*self._down, OSError)) else exc
            for job in batch:
                job.result, job.error = None, job.error or error

    def _transaction(self, batch: list[_Write]) -> None:
        started = time.perf_counter()
        with self._begin() as conn:
            for job in batch:
                job.result = job.work(conn)
        took = time.perf_counter() - started  # each write took the whole transaction's time
        for job in batch:
            metrics.series(metrics.STORE_DURATION, job.operation).observe(took)
        if self.checkpointer is not None:
            self.checkpointer.wrote(len(batch), conn)

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """This process's turn to write (the file lock of a SQLite database)."""
        if self._lock_path is None:
            yield
            return
        if self._lock_file is None or self._lock_file[0] != os.getpid():  # (a forked child
            self._lock_file = (os.getpid(), self._lock_path.open("a"))  # needs its own)
        with _locked(self._lock_file[1]):
            yield

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction on a pooled connection (PostgreSQL) or on the kept one (SQLite)."""
        if self._lock_path is None:
            with self.engine.begin() as conn:
                yield conn
            return
        conn = self._kept_connection()
        try:
            with conn.begin():
                yield conn
        except self._down:
            self._drop_connection()  # the next batch opens the file again
            raise

    def _kept_connection(self) -> Connection:
        if self._kept is None or self._kept[0] != os.getpid():  # a forked child opens its own
            self._kept = (os.getpid(), self.engine.connect())
        return self._kept[1]

    def _drop_connection(self) -> None:
        if self._kept is not None and self._kept[0] == os.getpid():
            with contextlib.suppress(*self._down):
                self._kept[1].invalidate()
        self._kept = None

    def close(self) -> None:
        """Release the kept connection and the file lock's file (writes still queued go on
        without them)."""
        if self._kept is not None and self._kept[0] == os.getpid():
            self._kept[1].close()
        self._kept = None
        if self._lock_file is not None:
            self._lock_file[1].close()
            self._lock_file = None
        if self.checkpointer is not None:
            self.checkpointer.close()


class Checkpointer:
    """Copies a SQLite database's write-ahead log back into the database file on a thread of
    its own, so that no write waits for it.

    SQLite does it by default in the commit that takes the log past 1,000 pages, and there it
    waited for two fsyncs while holding the write lock: 60% of the cost of a commit, averaged
    (a commit of one token: ~195 µs with it, ~75 µs without). The writer's connection does no
    checkpoints; this one runs a passive checkpoint (it never waits for readers or writers)
    after every :attr:`EVERY` writes, on its own connection.

    A passive checkpoint cannot start the log afresh while writes go on (SQLite reuses the
    log only once all of it is copied): under a steady stream of writes it would grow without
    end. Once it holds more than :attr:`LOG_LIMIT` pages, the writer's next leader restarts it
    (``RESTART``: copies what is left and starts the log afresh) in its turn, which keeps other
    writers out without a lock convoy; it does not wait for a reader still on the old log (a
    backup, say), but tries again after the next passive checkpoint.
    """

    #: writes between checkpoints
    EVERY = 256
    #: pages of log (4 KiB each) past which the writer restarts it
    LOG_LIMIT = 2000

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writes = 0
        self._wake = threading.Event()
        self._closed = False
        self._thread: tuple[int, threading.Thread] | None = None  # (pid, thread)
        #: checkpoints done by the thread, and restarts of the log by the writer
        self.done = self.restarts = 0
        self._restart_due = False

    def wrote(self, count: int, connection: Connection) -> None:
        """Count ``count`` writes just committed on ``connection`` (the writer's, in its
        turn); wake the thread when enough have been, restart the log when it is due."""
        if self._restart_due:
            self._restart_due = False
            driver = connection.connection.driver_connection
            try:  # with no wait: a reader still on the old log makes it a try for later
                driver.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
                try:
                    busy, _pages, _copied = driver.execute(  # type: ignore[union-attr]
                        "PRAGMA wal_checkpoint(RESTART)").fetchone()
                    self.restarts += not busy
                finally:
                    driver.execute(  # type: ignore[union-attr]
                        f"PRAGMA busy_timeout={int(WRITER_LOCK_WAIT * 1000)}")
            except Exception as exc:  # the writes stand; the next checkpoint tries again
                log.warning("checkpoint of the token store failed: %s", exc)
        self._writes += count  # only the writer's leader calls this: one at a time
        if self._writes < self.EVERY or self._closed:
            return
        self._writes = 0
        if self._thread is None or self._thread[0] != os.getpid():  # a forked child starts
            thread = threading.Thread(target=self._run, name="credenza-checkpoint",  # its own
                                      daemon=True)
            self._thread = (os.getpid(), thread)
            thread.start()
        self._wake.set()

    def _run(self) -> None:
        connection = None
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                break
            try:
                if connection is None:
                    connection = _own_connection(self._engine)
                _busy, pages, _copied = connection.execute(
                    "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self._restart_due = pages > self.LOG_LIMIT
                self.done += 1
            except Exception as exc:  # the next wake tries again, on a new connection
                log.warning("checkpoint of the token store failed: %s", exc)
                connection = None
        if connection is not None:
            connection.close()

    def close(self) -> None:
        """Stop the thread (a checkpoint under way finishes first)."""
        self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread[0] == os.getpid():
            self._thread[1].join(10)


class ChangeCounter:
    """A counter that every process on the host advances around each change of a stored
    token (revoked, reinstated, purged): an 8-byte file beside a SQLite database, mapped into
    memory, so that reading it costs no system call.

    A record read while the counter stood at N is still the stored one while it stands at N:
    records change only by those writes. The counter advances before such a write (records
    read meanwhile carry the new value) and again after its commit (so that they do not
    outlive it), both under a lock of the file.
    """

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "r+b")
        with _locked(self._file):
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
        self._map = mmap.mmap(fd, 8)

    def value(self) -> int:
        """The counter now."""
        return int.from_bytes(self._map[:8], "little")

    def advance(self) -> None:
        """Count one change (of any process)."""
        with _locked(self._file):
            self._map[:8] = (self.value() + 1).to_bytes(8, "little")

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Around a write that changes stored records: advanced before it and after it
        (failed or not)."""
        self.advance()
        try:
            yield
        finally:
            self.advance()

    def close(self) -> None:
        self._map.close()
        self._file.close()


@contextlib.contextmanager
def _locked(handle: Any) -> Iterator[None]:
    """Hold the exclusive file lock of ``handle`` (an open file) for the block."""
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


def _own_connection(engine: Engine) -> Any:
    """A driver connection of ``engine`` for a thread to keep: out of the pool for good (it
    never goes back, and the pool's limit does not count it)."""
    pooled = engine.raw_connection()
    pooled.detach()
    return pooled.dbapi_connection


@attrs.define(eq=False)
class _Write:
    """One queued write and, once done, its result or error."""

    operation: str
    work: Callable[[Connection], Any]
    result: Any = None
    error: Exception | None = None
    lead: bool = False  # this caller commits the queue
    woken: threading.Event = attrs.field(factory=threading.Event)


@attrs.frozen
class SqlSettings:
    """``[plugins.sql]``."""

    url: str | None = setting(
        "A SQLAlchemy URL (postgresql+psycopg://... for replicas; it usually holds a password)",
        None, secret=True, default_text="sqlite:///DATA_DIR/tokens.sqlite3")
    purge_after_days: int = setting("Delete records that expired longer ago than this (0: keep "
                                    "them forever)", 30, min=0, max=3650)
    write_wait_seconds: int = setting("How long a write waits to be committed before the "
                                      "request is answered 503", 10, min=1, max=300)


class SqlTokenStore:
    """The token store and the shared credential cache, and the plugin that provides them."""

    settings = SqlSettings

    def __init__(self, section: Section) -> None:
        settings = read(SqlSettings, section)
        url = settings.url
        if url is None:
            private_directory(section.data_dir)
            url = f"sqlite:///{section.data_dir / 'tokens.sqlite3'}"
        self.purge_after = dt.timedelta(days=settings.purge_after_days)
        try:
            self.engine = _engine(url)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise section.error("url", f"not a usable database URL: {exc}") from None
        if self.engine.dialect.name not in ("sqlite", "postgresql"):
            raise section.error("url", "credenza keeps its tokens in SQLite or PostgreSQL, not "
                                f"{self.engine.dialect.name}")
        self.url = self.engine.url.render_as_string(hide_password=True)
        self.health = HealthProbe("token store", self.ping)
        self._migrated = False
        driver = self.engine.dialect.loaded_dbapi
        #: what a store that is down (or locked too long) raises, through SQLAlchemy or not
        self.down: tuple[type[Exception], ...] = (
            sa.exc.OperationalError, sa.exc.InterfaceError, driver.OperationalError,
            driver.InterfaceError)
        database = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        sqlite_file = database is not None and database != ":memory:"
        self.writer = Writer(
            _write_engine(self.engine) if database else self.engine,
            Path(f"{database}.lock") if sqlite_file else None,
            settings.write_wait_seconds, self._unavailable, self.down,
            Checkpointer(self.engine) if sqlite_file else None)
        #: the hot reads' engine: on PostgreSQL, autocommit connections with no ping on
        #: checkout (a read by key was four round trips: ping, BEGIN, SELECT, ROLLBACK)
        self.reader = self.engine if database else _reader_engine(self.engine)
        #: on a SQLite file, each thread's own read connection: (pid, connection)
        self._thread_reader = threading.local() if sqlite_file else None
        #: on a SQLite file, the host's count of changes to stored records, and the records
        #: this process read lately: token id -> (count when read, record)
        self._changes = ChangeCounter(Path(f"{database}.changes")) if sqlite_file else None
        self._known: ExpiringMap[str, tuple[int, TokenRecord]] = ExpiringMap(
            self.KNOWN_RECORDS)
        self._get = Prepared(self.engine, sa.select(tokens).where(
            tokens.c.token_id == sa.bindparam("token_id")))
        self._find = Prepared(self.engine, sa.select(tokens).join(secrets_table).where(
            secrets_table.c.secret_hash == sa.bindparam("secret_hash")))
        self._insert = Prepared(self.engine, tokens.insert().values(
            {column.name: sa.bindparam(column.name) for column in tokens.c}))
        self._insert_secret = Prepared(self.engine, secrets_table.insert().values(
            secret_hash=sa.bindparam("secret_hash"), token_id=sa.bindparam("token_id")))

    # -- the plugin -----------------------------------------------------------------------------

    @hookimpl
    def credenza_token_store(self, config: Config) -> TokenStore:
        self.migrate()
        self.purge_expired()
        return self

    @hookimpl
    def credenza_commands(self, cli: click.Group) -> None:
        @cli.group(name="tokens")
        def tokens_group() -> None:
            """The token store."""

        @tokens_group.command(name="purge")
        def purge_command() -> None:
            """Delete records that expired more than purge_after_days ago."""
            self.migrate()
            click.echo(f"purged {self.purge_expired()} expired token records from {self.url}")

    def purge_expired(self) -> int:
        """Delete records expired longer than ``purge_after_days`` ago (0: keep them all)."""
        if not self.purge_after:
            return 0
        return self.purge(utcnow() - self.purge_after)

    @hookimpl
    def credenza_health(self) -> list[Health]:
        return [self.health()]

    @hookimpl
    def credenza_shutdown(self) -> None:
        self.close()

    # -- schema -----------------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply the migrations this database lacks; returns the schema version."""
        with self._begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(727274331)"))
            metadata.create_all(conn, tables=[schema_version])
            current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
            current = current or 0
            if current > len(MIGRATIONS):
                raise ConfigError(f"the token store at {self.url} has schema version {current}; "
                                  f"this credenza knows up to {len(MIGRATIONS)}: upgrade it")
            for version in range(current, len(MIGRATIONS)):
                MIGRATIONS[version](conn)
                conn.execute(schema_version.insert().values(version=version + 1))
                log.info("token store %s: migrated to schema version %d", self.url, version + 1)
        self._migrated = True
        return len(MIGRATIONS)

    def _begin(self) -> Any:
        try:
            return self.engine.begin()
        except sa.exc.OperationalError as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: Exception) -> Unavailable:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else ""
        error = Unavailable(f"the token store at {self.url} is unavailable: "
                            f"{type(getattr(exc, 'orig', exc)).__name__}: {reason}",
                            retry_after=5)
        self.health.failed(error.detail)
        return error

    def _run(self, operation: str, work: Callable[[Connection], Any]) -> Any:
        try:
            with metrics.timed(metrics.series(metrics.STORE_DURATION, operation)), \
                    self.engine.begin() as conn:
                return work(conn)
        except self.down as exc:
            raise self._unavailable(exc) from None

    def _read(self, operation: str, statement: Prepared, **values: Any) -> list[tuple[Any, ...]]:
        """The rows of a hot read, on a pooled driver connection with no SQLAlchemy transaction
        around it (one statement reads consistently on its own). Without a ping on checkout,
        a connection the server dropped fails the read: the read, which changes nothing, is
        tried once more on a new connection."""
        try:
            with metrics.timed(metrics.series(metrics.STORE_DURATION, operation)):
                if self._thread_reader is not None:
                    return self._read_own(statement, values)
                try:
                    return self._read_once(statement, values)
                except self.down:
                    if self.reader is self.engine:  # SQLite: no server to drop anything
                        raise
                    return self._read_once(statement, values)
        except self.down as exc:
            raise self._unavailable(exc) from None

    def _read_own(self, statement: Prepared, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        """A read of a SQLite file on the thread's own connection, opened on its first read
        and kept (a pool checkout and return cost more than the read; each statement still
        reads the latest commit, as it runs outside a transaction)."""
        kept = getattr(self._thread_reader, "connection", None)
        if kept is None or kept[0] != os.getpid():  # a forked child opens its own
            kept = self._thread_reader.connection = (os.getpid(), _own_connection(self.reader))
        try:
            return statement.rows(kept[1], **values)
        except self.down:
            self._drop_own_reader()  # the next read opens the file again
            raise

    def _drop_own_reader(self) -> None:
        kept = getattr(self._thread_reader, "connection", None)
        self._thread_reader.connection = None  # type: ignore[union-attr]
        if kept is not None and kept[0] == os.getpid():
            with contextlib.suppress(*self.down):
                kept[1].close()

    def _read_once(self, statement: Prepared, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        connection = self.reader.raw_connection()
        try:
            return statement.rows(connection, **values)
        except self.down:
            connection.invalidate()  # not back into the pool
            raise
        finally:
            connection.close()

    def _write(self, operation: str, work: Callable[[Connection], Any]) -> Any:
        return self.writer.write(operation, work)

    # -- TokenStore -----------------------------------------------------------------------------

    def add(self, record: TokenRecord, secret_hashes: Iterable[bytes] = ()) -> None:
        row = {
            "token_id": record.token_id, "token_type": record.token_type,
            "provider": record.provider, "consumer_type": record.consumer_type,
            "consumer_id": record.consumer_id, "creator_type": record.creator_type,
            "creator_id": record.creator_id, "issued_at": _ms(record.issued_at),
            "expires_at": _ms(record.expires_at), "revoked": record.revoked,
            "updated_at": _ms(record.updated_at) if record.updated_at else None,
            "claims": msgspec.json.encode(dict(record.claims)).decode(),
        }
        hashes = [{"secret_hash": digest, "token_id": record.token_id}
                  for digest in secret_hashes]

        def insert(conn: Connection) -> None:
            self._insert.run(conn, [row])
            if hashes:
                self._insert_secret.run(conn, hashes)

        self._write("add", insert)

    #: records remembered at most, and for how long (a bound for the one case the counter
    #: cannot cover: a process killed between a change's commit and its second advance)
    KNOWN_RECORDS, KNOWN_SECONDS = 10_000, 1.0

    def get(self, token_id: str) -> TokenRecord | None:
        if self._changes is None:
            rows = self._read("get", self._get, token_id=token_id)
            return _record(_Row._make(rows[0])) if rows else None
        # On a SQLite file, a record read since the last change of any stored record is still
        # the stored one: every bearer request, validate and introspect asks for the same few.
        count, now = self._changes.value(), time.monotonic()  # the count first, then the row
        known = self._known.get(token_id)
        if known is not None and known[0] == count:
            return known[1]
        rows = self._read("get", self._get, token_id=token_id)
        if not rows:
            return None  # not remembered: another process may be about to add it
        record = _record(_Row._make(rows[0]))
        self._known.put(token_id, (count, record), now + self.KNOWN_SECONDS)
        return record

    def find(self, secret_hash: bytes) -> TokenRecord | None:
        rows = self._read("find", self._find, secret_hash=secret_hash)
        return _record(_Row._make(rows[0])) if rows else None

    def list(self, query: TokenQuery, max_results: int, after: str | None,
             now: dt.datetime) -> tuple[list[TokenRecord], bool, int]:
        conditions = [tokens.c.consumer_id == query.consumer_id]
        if query.provider is not None:
            conditions.append(tokens.c.provider == query.provider)
        if query.revoked is not None:
            conditions.append(tokens.c.revoked == query.revoked)
        if query.expired is not None:
            conditions.append(tokens.c.expires_at <= _ms(now) if query.expired
                              else tokens.c.expires_at > _ms(now))
        page = sa.select(tokens).where(*conditions)
        if after is not None:
            page = page.where(tokens.c.token_id > after)
        page = page.order_by(tokens.c.token_id).limit(max_results + 1)
        count = sa.select(sa.func.count()).select_from(tokens).where(*conditions)

        def read(conn: Connection) -> tuple[list[Any], int]:
            return list(conn.execute(page)), conn.execute(count).scalar() or 0

        rows, total = self._run("list", read)
        return [_record(row) for row in rows[:max_results]], len(rows) > max_results, total

    def token_ids(self, consumer_id: str, provider: str) -> list[str]:
        query = sa.select(tokens.c.token_id).where(tokens.c.consumer_id == consumer_id,
                                                   tokens.c.provider == provider)
        return [row.token_id for row in self._run("token_ids", lambda conn: conn.execute(query))]

    def set_revoked(self, token_ids: Iterable[str], revoked: bool, at: dt.datetime) -> int:
        ids = list(token_ids)
        if not ids:
            return 0
        update = (tokens.update().where(tokens.c.token_id.in_(ids), tokens.c.revoked != revoked)
                  .values(revoked=revoked, updated_at=_ms(at)))
        with self._changing():
            return self._write("set_revoked", lambda conn: conn.execute(update).rowcount)

    def _changing(self) -> contextlib.AbstractContextManager[None]:
        """Around a write that changes stored records (see :class:`ChangeCounter`)."""
        return self._changes.changing() if self._changes is not None else contextlib.nullcontext()

    def purge(self, expired_before: dt.datetime) -> int:
        cutoff = _ms(expired_before)
        doomed = sa.select(tokens.c.token_id).where(tokens.c.expires_at < cutoff)

        def delete(conn: Connection) -> int:
            conn.execute(secrets_table.delete().where(secrets_table.c.token_id.in_(doomed)))
            conn.execute(cache.delete().where(sa.func.coalesce(cache.c.expires_at, 0) < cutoff,
                                              sa.func.coalesce(cache.c.lease_until, 0) < cutoff))
            return conn.execute(tokens.delete().where(tokens.c.expires_at < cutoff)).rowcount

        with self._changing():
            return self._write("purge", delete)

    # -- SharedCache ----------------------------------------------------------------------------

    def cache_get(self, key: bytes) -> bytes | None:
        row = self._run("cache_get", lambda conn: conn.execute(
            sa.select(cache.c.value).where(cache.c.key == key)).first())
        return None if row is None or row.value is None else bytes(row.value)

    def cache_lease(self, key: bytes, holder: str, until: dt.datetime,
                    now: dt.datetime) -> bool:
        def lease(conn: Connection) -> bool:
            # Both dialects serialise these: SQLite has one writer; PostgreSQL re-checks the
            # UPDATE's condition on the row it locked.
            insert = _insert(conn).values(key=key, lease_holder=holder, lease_until=_ms(until))
            inserted = insert.on_conflict_do_nothing(index_elements=["key"]).returning(cache.c.key)
            if conn.execute(inserted).first() is not None:  # (rowcount is -1 on PostgreSQL)
                return True
            take = cache.update().where(
                cache.c.key == key,
                sa.or_(cache.c.lease_until.is_(None), cache.c.lease_until < _ms(now),
                       cache.c.lease_holder == holder),
            ).values(lease_holder=holder, lease_until=_ms(until))
            return bool(conn.execute(take).rowcount)

        return bool(self._write("cache_lease", lease))

    def cache_put(self, key: bytes, value: bytes, expires_at: dt.datetime, holder: str) -> None:
        def put(conn: Connection) -> None:
            stored = cache.update().where(cache.c.key == key).values(
                value=value, expires_at=_ms(expires_at), lease_holder=None, lease_until=None)
            if not conn.execute(stored).rowcount:  # the row was purged meanwhile
                conn.execute(_insert(conn).values(key=key, value=value,
                                                  expires_at=_ms(expires_at))
                             .on_conflict_do_nothing(index_elements=["key"]))

        self._write("cache_put", put)

    def cache_release(self, key: bytes, holder: str) -> None:
        self._write("cache_release", lambda conn: conn.execute(
            cache.update().where(cache.c.key == key, cache.c.lease_holder == holder)
            .values(lease_holder=None, lease_until=None)))

    def ping(self) -> None:
        self._run("ping", lambda conn: conn.execute(sa.text("SELECT 1")))

    def close(self) -> None:
        if self._thread_reader is not None:  # other threads' close when their thread ends
            self._drop_own_reader()
        if self._changes is not None:
            self._changes.close()
        self.writer.close()
        self.writer.engine.dispose()
        self.reader.dispose()
        self.engine.dispose()


def _insert(conn: Connection) -> Any:
    """An INSERT of the cache table that can be told ``on_conflict_do_nothing``."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(cache)


#: a PostgreSQL pool keeps every connection it opens, up to 15: one opened past a smaller pool
#: ("overflow") is closed when it comes back, and under load each such read or transaction
#: opened a new connection first (a new server process: the slow tail, up to a second, of
#: issuance on PostgreSQL)
POOL = {"pool_size": 15, "max_overflow": 0}


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, **POOL)


def _reader_engine(engine: Engine) -> Engine:
    """A PostgreSQL engine for single-statement reads: autocommit (no BEGIN, nothing to roll
    back when the connection returns to the pool), no ping (the caller retries instead)."""
    return sa.create_engine(engine.url, isolation_level="AUTOCOMMIT", **POOL)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


#: seconds the writer waits for SQLite's write lock (short: the writers of all processes take
#: turns by the file lock first)
WRITER_LOCK_WAIT = 5


def _write_engine(engine: Engine) -> Engine:
    """The writer's own SQLite connection, whose transactions take the write lock at their
    start (``BEGIN IMMEDIATE``) rather than at their first write, where a busy database could
    only be waited for by SQLite's polling; the wait is short, since credenza's writers take
    turns by the file lock first."""
    writer = sa.create_engine(engine.url, pool_size=1, max_overflow=1,  # one leader at a time
                              connect_args={"check_same_thread": False,
                                            "timeout": WRITER_LOCK_WAIT})

    @sa.event.listens_for(writer, "connect")
    def _connected(dbapi_connection: Any, record: Any) -> None:
        _sqlite_pragmas(dbapi_connection, record)
        dbapi_connection.isolation_level = None  # SQLAlchemy, not pysqlite, says BEGIN
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer's work
        # a log started afresh is cut back to this size (a burst does not leave it large)
        dbapi_connection.execute(f"PRAGMA journal_size_limit={Checkpointer.LOG_LIMIT * 4096}")

    @sa.event.listens_for(writer, "begin")
    def _begin(conn: Connection) -> None:
        # on the driver's connection: through SQLAlchemy's execute, this cost more than the
        # insert it starts
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]

    return writer
