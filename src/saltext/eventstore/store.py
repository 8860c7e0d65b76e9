"""
The storage seam: :py:class:`Store`, what the writer, the read-back and the
maintenance functions ask of a database (one transaction, a select, an
insert that keeps the first copy of a row, the schema), with what every
database shares: a connection per thread, a list of hosts tried in order
(the host in use remembered in ``<spool_dir>/.host-in-use``), conflicts run
again, lost connections replaced.  Each database is a subclass in a module
of its own (``store_mysql``, ``store_sqlite``, ``store_postgres``); the SQL
is written once, in MySQL's words, and each store translates it.
"""

import logging
import os
import random
import threading
import time
import uuid

from saltext.eventstore.config import host_name
from saltext.eventstore.rows import TABLES, fits

log = logging.getLogger(__name__)

#: How often a transaction that lost to another one (a deadlock, a Galera
#: certification conflict, a lock wait timeout) is run again, and the first
#: pause before that in seconds (doubled each time, with jitter): two masters
#: storing the same return on two Galera nodes conflict once, then find it stored.
CONFLICT_RETRIES = 5
CONFLICT_PAUSE = 0.02


def insert_sql(table, columns):
    # A plain INSERT: the unique key keeps the first copy of a row and the store
    # takes a second copy's duplicate-key error as "stored already".  Not ON
    # DUPLICATE KEY UPDATE, which needs the UPDATE privilege even for a new
    # row; not INSERT IGNORE, which would also turn a too-long value into a cut one.
    return (
        f"INSERT INTO `{table}` ({', '.join(f'`{c}`' for c in columns)})"
        f" VALUES ({', '.join(['%s'] * len(columns))})"
    )


INSERT = {table: insert_sql(table, columns) for table, columns in TABLES.values()}

CREATE_LIKE = "CREATE TABLE IF NOT EXISTS `{target}` LIKE `{source}`"


class Store:
    """
    One connection per thread (the reactor stores from up to
    ``reactor_worker_threads`` threads at once), reused across calls.
    """

    dialect = None
    tables = ()

    def is_lost_connection(self, exc):  # pylint: disable=unused-argument
        """
        True when the connection is gone (server restarted, idle timeout):
        worth one retry on a new connection.
        """
        return False

    def is_conflict(self, exc):  # pylint: disable=unused-argument
        """
        True when the transaction lost to another one (a deadlock, a
        certification conflict of a replicated cluster, a lock wait timeout):
        worth running again on the same connection after a short pause.
        """
        return False

    def is_not_ready(self, exc):  # pylint: disable=unused-argument
        """
        True when the server answers but takes no writes (a cluster node
        outside the primary component or not synced yet, read-only): worth
        trying the next of :py:meth:`hosts`.
        """
        return False

    def is_duplicate(self, exc):  # pylint: disable=unused-argument
        """
        True when ``exc`` says a unique key is taken (or, adding one, that
        rows share it).
        """
        return False

    def __init__(self, config):
        self.config = config
        self._local = threading.local()
        self._hosts_lock = threading.Lock()
        # Index in hosts() where new connections go first, and the one the log
        # last named as in use: the one a moment ago, when there are several.
        self._host_in_use = self._host_logged = self._remembered_host()
        self._host_failure = None  # why the last host was left

    def sql(self, statement):
        return statement

    def hosts(self):
        """
        Where the database is, in the order configured: one place, unless
        the backend takes a list of hosts.
        """
        return (None,)

    def connect_to(self, host):
        """
        A new connection to ``host``, one of :py:meth:`hosts`.
        """
        raise NotImplementedError

    def connect(self):
        """
        A new connection to the host in use or, when it does not answer, to
        the next of :py:meth:`hosts` that does; the first error when none does.
        """
        hosts = self.hosts()
        with self._hosts_lock:
            start = self._host_in_use
        errors = []
        for step in range(len(hosts)):
            index = (start + step) % len(hosts)
            try:
                conn = self.connect_to(hosts[index])
            except Exception as exc:  # pylint: disable=broad-except
                errors.append(exc)
                self._host_failed(index, exc)
                continue
            self._local.host = index
            self._using(index, errors[0] if errors else None)
            return conn
        raise errors[0]

    def _host_file(self):
        # In the spool directory, which is this master's: the reactor loads
        # its runners anew every reactor_refresh_interval (60 s), and a
        # restarted master should not start on a node it had left either.
        return os.path.join(self.config.spool_dir, ".host-in-use")

    def _remembered_host(self):
        """
        The index in :py:meth:`hosts` of the host in use when this master last
        moved to another one; the first when it never did.
        """
        hosts = self.hosts()
        if len(hosts) < 2:
            return 0
        try:
            with open(self._host_file(), encoding="utf-8") as handle:
                name = handle.read().strip()
        except OSError:
            return 0
        names = [host_name(host) for host in hosts]
        return names.index(name) if name in names else 0

    def _remember_host(self, index):
        try:
            os.makedirs(self.config.spool_dir, mode=0o700, exist_ok=True)
            temp = f"{self._host_file()}.{uuid.uuid4().hex[:8]}.tmp"
            with open(temp, "w", encoding="utf-8") as handle:
                handle.write(host_name(self.hosts()[index]) + "\n")
            os.replace(temp, self._host_file())
        except OSError as exc:
            log.warning(
                "eventstore: cannot remember the host in use in %s: %s", self._host_file(), exc
            )

    def _host_failed(self, index, exc):
        """
        New connections go to the host after ``index``, unless another
        thread moved on already.
        """
        with self._hosts_lock:
            if self._host_in_use == index:
                self._host_in_use = (index + 1) % len(self.hosts())
                self._host_failure = exc

    def _using(self, index, exc):
        """
        Log once per switch which host is in use now, and why.
        """
        with self._hosts_lock:
            self._host_in_use = index
            if index == self._host_logged:
                return
            previous, self._host_logged = self._host_logged, index
            why = exc or self._host_failure
        log.warning(
            "eventstore: storing into %s from now on: %s failed (%s)",
            host_name(self.hosts()[index]),
            host_name(self.hosts()[previous]),
            why,
        )
        self._remember_host(index)

    def is_row_error(self, exc):
        """
        True when the database refused this row as such (it would refuse it
        again), False when it could not take any row (down, locked, no table).
        """
        raise NotImplementedError

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
        return conn

    def _drop_connection(self):
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # pylint: disable=broad-except
                pass

    def _rollback(self, conn):
        try:
            conn.rollback()
        except Exception:  # pylint: disable=broad-except
            self._drop_connection()

    def run(self, work):
        """
        Run ``work(cursor)`` in one transaction on this thread's connection and
        commit.  A transaction that lost to another one is run again on the
        same connection after a short pause, up to ``CONFLICT_RETRIES`` times.
        A connection the server dropped (idle timeout, restart), or a server
        that takes no writes, is replaced, on the next host when there are
        several, once per host.  All our writes are idempotent, so running
        them again is safe.
        """
        conflicts = reconnects = 0
        while True:
            conn = self._connection()
            try:
                cur = conn.cursor()
                try:
                    result = work(cur)
                finally:
                    cur.close()
                conn.commit()
                return result
            except Exception as exc:  # pylint: disable=broad-except
                if self.is_conflict(exc):
                    self._rollback(conn)
                    if conflicts == CONFLICT_RETRIES:
                        raise
                    conflicts += 1
                    time.sleep(conflict_pause(conflicts, random.random()))
                    continue
                not_ready = self.is_not_ready(exc)
                if (not_ready or self.is_lost_connection(exc)) and reconnects < len(self.hosts()):
                    reconnects += 1
                    if not_ready:
                        self._host_failed(getattr(self._local, "host", 0), exc)
                    self._drop_connection()
                    continue
                self._rollback(conn)
                raise

    def create_tables(self):
        def work(cur):
            for statement in self.tables:
                cur.execute(statement)

        self.run(work)

    def create_table_like(self, source, target):
        """
        Create ``target`` with the columns and keys of ``source``, unless it exists.
        """

        def work(cur):
            cur.execute(CREATE_LIKE.format(source=source, target=target))

        self.run(work)

    def insert(self, rows):
        """
        Insert rows of one type in one transaction; how many were new (a row
        whose key is stored already is left as it is).
        """
        table, _ = TABLES[type(rows[0])]
        limit = self.max_row_bytes()
        for row in rows:
            if not fits("".join(value for value in row if isinstance(value, str)), limit):
                raise RowTooBig(f"the row is bigger than {self.describe()} takes in one statement")
        params = [tuple(row) for row in rows]
        return self.run(lambda cur: self._insert_new(cur, INSERT[table], params))

    def _insert_new(self, cur, statement, params):
        """
        Run the INSERT for each row of ``params`` and count those that were new.
        """
        raise NotImplementedError

    def select(self, statement, params):
        def work(cur):
            cur.execute(self.sql(statement), params)
            return cur.fetchall()

        return self.run(work)

    def max_row_bytes(self):
        """
        How big a row the database takes in one statement.
        """
        return 1_000_000_000  # SQLite's SQLITE_MAX_LENGTH

    def describe(self):
        raise NotImplementedError

    def server_version(self):
        raise NotImplementedError

    def schema(self):
        """
        The :py:class:`Schema` of ``jids`` and ``salt_returns`` as the database has them.
        """
        raise NotImplementedError


def index_columns(rows):
    """
    The column tuple of each index, from ``(index, column)`` rows in index order.
    """
    indexes = {}
    for index, column in rows:
        indexes.setdefault(index, []).append(column)
    return {tuple(columns) for columns in indexes.values()}


def conflict_pause(attempt, jitter):
    """
    Seconds to wait before running a transaction again after its
    ``attempt``-th conflict: ``CONFLICT_PAUSE`` doubled each time, times 0.5
    to 1.5 (``jitter`` from 0 to 1), so that two masters that conflicted do
    not meet again.  Pure.
    """
    return CONFLICT_PAUSE * 2 ** (attempt - 1) * (0.5 + jitter)


class RowTooBig(ValueError):
    """
    A row bigger than the database takes in one statement (MySQL's
    ``max_allowed_packet``): sending it would only make the server hang up.
    """


class RowRefused(ValueError):
    """
    A row the database refused as such, with why, in words that quote none
    of its data.
    """
