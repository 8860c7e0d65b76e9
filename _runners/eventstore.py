"""
Store every job return the master sees into MySQL/MariaDB or SQLite, from the master.

Minions keep no database credentials: the master's reactor hands each
``salt/job/<jid>/new`` (the job's load) and ``salt/job/<jid>/ret/<minion>``
(a minion's return) event to :py:func:`store`, which writes it into the tables
of Salt's mysql returner (``jids``, ``salt_returns``).  Every reader of that
layout (the mysql returner's ``get_jid``/``get_fun``, Alcali, SQL reports)
reads these rows as its own.

:depends: PyMySQL for the mysql backend; nothing for SQLite.

Installation
------------

Copy this file to ``_runners/eventstore.py`` under a ``file_roots`` directory,
the reactor SLS to ``/srv/reactor/eventstore.sls``, then:

.. code-block:: bash

    salt-run saltutil.sync_runners
    salt-run eventstore.init

and add to the master config (then restart the master):

.. code-block:: yaml

    reactor:
      - 'salt/job/*/new':
        - /srv/reactor/eventstore.sls
      - 'salt/job/*/ret/*':
        - /srv/reactor/eventstore.sls

Master configuration
--------------------

The mysql returner's own keys select MySQL, so one config serves both.  The
defaults are the returner's:

.. code-block:: yaml

    mysql.host: 'salt'
    mysql.user: 'salt'
    mysql.pass: 'salt'
    mysql.db: 'salt'
    mysql.port: 3306
    mysql.ssl_ca: None      # TLS to the server: any of these three turns it on
    mysql.ssl_cert: None
    mysql.ssl_key: None

The nested form ``mysql: {host: ..., user: ...}`` is read too; a flat key wins.
With none of these keys, returns go to SQLite in
``<cachedir>/eventstore.sqlite3`` (mode 0600).

Everything else sits under one ``eventstore`` key; all of it is optional:

.. code-block:: yaml

    eventstore:
      backend: mysql          # or sqlite; default: mysql when a mysql.* key is set
      sqlite_path: /var/cache/salt/master/eventstore.sqlite3
      ignore_funs:            # shell globs of functions whose returns are not stored
        - saltutil.find_job   # always ignored, listed here or not
        - test.ping
      verify_returns: True    # default: True when master_job_cache is local_cache (and no ext_job_cache)
      job_cache_wait: 5       # seconds to wait for the master to write its job cache
      spool_dir: /var/cache/salt/master/eventstore_spool

The configuration is read once per loaded module, not per stored return: after
a change, restart the master (the reactor keeps its loaded runners).

What it guarantees
------------------

- **One row per (jid, minion)** and per jid, however often an event arrives
  (a unique key; the first copy wins).
- **Verified returns.**  Any minion can fire an event tagged as another
  minion's return.  With ``verify_returns`` (the default with the default
  ``local_cache`` job cache) a return is stored only when the master's own job
  cache holds it, and it is the job cache's copy that is stored; a forgery is
  refused and logged with its tag.  Turn it off only for a master whose job
  cache is not ``local_cache``: then every return event on the bus is believed.
- **Whole returns.**  The event bus cuts values of events over
  ``max_event_size`` to ``VALUE_TRIMMED``; the job cache keeps them whole, and
  that copy is stored.
- **Nothing lost while the database is down.**  A row that cannot be written
  is written to ``spool_dir`` (fsynced), one warning is logged per outage, and
  the database is not tried again for a growing pause (1 s to 30 s), so a dead
  server does not hold reactor threads.  The spool is written back by the next
  successful store, 100 rows at a time, and by :py:func:`replay`.
- **Nothing stored wrong.**  A row the database refuses as such (too big for
  its column: ``mediumtext`` holds 16 MiB) is kept in the
  ``eventstore_dead_letters`` table with the reason; :py:func:`query` shows it.
- Returns the reactor never saw (master down, reactor queue full) are copied
  from the job cache by :py:func:`backfill`.
"""

import datetime
import fnmatch
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections import namedtuple

import salt.loader
import salt.payload
import salt.utils.jid

try:
    import pymysql
    from pymysql.constants import SERVER_STATUS

    HAS_PYMYSQL = True
except ImportError:
    HAS_PYMYSQL = False

import sqlite3

log = logging.getLogger(__name__)

__virtualname__ = "eventstore"

#: Never stored: Salt polls running jobs with it every few seconds.
ALWAYS_IGNORED = ("saltutil.find_job",)

#: The width of ``salt_returns.fun`` in the mysql returner's layout.
FUN_WIDTH = 50

MYSQL_DEFAULTS = {
    "host": "salt",
    "user": "salt",
    "pass": "salt",
    "db": "salt",
    "port": 3306,
    "ssl_ca": None,
    "ssl_cert": None,
    "ssl_key": None,
}

#: What ``mediumtext`` holds, in bytes.
TEXT_BYTES = 16 * 1024 * 1024 - 1

#: Rows written back from the spool per successful store.
REPLAY_BATCH = 100

JID_PATTERN = re.compile(r"\d{20}(?:_[0-9A-Za-z]+)?")

#: What the event bus puts in place of a value of an event over max_event_size.
TRIMMED = "VALUE_TRIMMED"

#: What became of a row handed to the writer.
VERDICTS = ("stored", "duplicate", "spooled", "dead-lettered")

ReturnRow = namedtuple("ReturnRow", "fun jid ret id success full_ret")
LoadRow = namedtuple("LoadRow", "jid load")
DeadLetter = namedtuple("DeadLetter", "jid id fun reason data")

#: Each row type's table and columns, in the order of its fields.
TABLES = {
    ReturnRow: ("salt_returns", ("fun", "jid", "return", "id", "success", "full_ret")),
    LoadRow: ("jids", ("jid", "load")),
    DeadLetter: ("eventstore_dead_letters", ("jid", "id", "fun", "reason", "data")),
}
ROW_TYPES = {table: row_type for row_type, (table, _) in TABLES.items()}


class Refused(ValueError):
    """
    An event that looks like ours but cannot be stored as it is; the message is
    the reason, logged with the event's tag.
    """


# ---------------------------------------------------------------------------
# Configuration: read once, from the master config.
# ---------------------------------------------------------------------------

Config = namedtuple(
    "Config", "backend mysql sqlite_path ignore_funs verify_returns job_cache_wait spool_dir"
)


def _resolve_config(opts):
    """
    Turn the master config into a :py:class:`Config`.  Pure: reads ``opts`` only.
    """
    own = opts.get("eventstore") or {}
    nested = opts.get("mysql") if isinstance(opts.get("mysql"), dict) else {}
    mysql = dict(MYSQL_DEFAULTS)
    given = False
    for key in MYSQL_DEFAULTS:
        if f"mysql.{key}" in opts:
            value, given = opts[f"mysql.{key}"], True
        elif key in nested:
            value, given = nested[key], True
        else:
            continue
        # The returner's convention: the string "None" means unset.
        mysql[key] = None if isinstance(value, str) and value.lower() == "none" else value
    mysql["port"] = int(mysql["port"])

    backend = own.get("backend") or ("mysql" if given else "sqlite")
    if backend not in ("mysql", "sqlite"):
        raise ValueError(f"eventstore: backend must be mysql or sqlite, not {backend!r}")
    cachedir = opts.get("cachedir", "/var/cache/salt/master")
    ignore = tuple(ALWAYS_IGNORED) + tuple(
        glob for glob in own.get("ignore_funs") or () if glob not in ALWAYS_IGNORED
    )
    # Only local_cache can be asked cheaply for one minion's return of one job;
    # with an ext_job_cache the master writes no returns there.
    job_cache_readable = bool(
        opts.get("job_cache", True)
        and not opts.get("ext_job_cache")
        and opts.get("master_job_cache", "local_cache") == "local_cache"
    )
    verify = own.get("verify_returns")
    return Config(
        backend=backend,
        mysql=mysql,
        sqlite_path=own.get("sqlite_path") or os.path.join(cachedir, "eventstore.sqlite3"),
        ignore_funs=ignore,
        verify_returns=job_cache_readable if verify is None else bool(verify),
        job_cache_wait=float(own.get("job_cache_wait", 5)),
        spool_dir=own.get("spool_dir") or os.path.join(cachedir, "eventstore_spool"),
    )


# ---------------------------------------------------------------------------
# Events to rows: pure functions.
# ---------------------------------------------------------------------------


def _parse_tag(tag):
    """
    Split a job event tag.  Returns ``("new", jid, None)``,
    ``("ret", jid, minion)``, or ``None`` for any other tag.
    """
    if not isinstance(tag, str) or not tag.startswith("salt/job/"):
        return None
    rest = tag[len("salt/job/") :]
    if rest.endswith("/new"):
        return ("new", rest[: -len("/new")], None)
    # From the right: a forged jid may hold slashes, a minion id may not.
    jid, ret, minion = rest.rpartition("/ret/")
    if ret:
        return ("ret", jid, minion)
    return None


def _to_json(obj):
    """
    JSON as the mysql returner writes it (``salt.utils.json.dumps``: UTF-8, not
    ASCII escapes), but always valid JSON that the database can hold: text that
    cannot be encoded as UTF-8 (lone surrogates) is written with ASCII escapes,
    and NaN and infinities, which JSON lacks, as the strings ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"``.  Raises :py:class:`Refused` for data
    nested too deeply to write.
    """
    try:
        try:
            text = json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_json_default)
        except ValueError:
            obj = _finite(obj)
            text = json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_json_default)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(obj, ensure_ascii=True, allow_nan=False, default=_json_default)
    except RecursionError:
        raise Refused("the data is nested too deeply to store") from None
    return text


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(value) for value in obj]
    return obj


def _json_default(obj):
    # Event data is msgpack: bytes and sets are all that JSON lacks.
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("utf-8", "surrogateescape")
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    return str(obj)


def _is_ignored(fun, ignore_funs):
    """
    True when ``fun`` matches one of the shell globs in ``ignore_funs``.
    """
    return any(fnmatch.fnmatchcase(fun, glob) for glob in ignore_funs)


def _check_minion_id(minion):
    # Salt's own rules for a minion id (salt.utils.verify.valid_id), and what a
    # varchar(255) utf8mb4 column can hold.
    valid = (
        0 < len(minion) <= 255
        and minion not in (".", "..")
        and minion.isprintable()
        and not any(char in minion for char in "/\\")
    )
    try:
        minion.encode("utf-8")
    except UnicodeEncodeError:
        valid = False
    if not valid:
        raise Refused(f"{minion[:80]!r} is not a minion id")


def _fun_name(fun):
    # A compound job (salt '*' test.ping,test.version) returns a list of functions.
    if isinstance(fun, (list, tuple)) and fun and all(isinstance(f, str) for f in fun):
        return ",".join(fun)
    if isinstance(fun, str) and fun:
        return fun
    raise Refused("the event has no function name")


def _check_jid(tag_jid, data):
    if len(tag_jid) > 255 or not JID_PATTERN.fullmatch(tag_jid):
        raise Refused(f"the tag's jid {tag_jid[:80]!r} is not a job id")
    if "jid" in data and str(data["jid"]) != tag_jid:
        raise Refused(f"data.jid {str(data['jid'])[:40]!r} disagrees with the tag")


def _unwrap(data):
    if not isinstance(data, dict):
        raise Refused("the event data is not a mapping")
    if "return" not in data and isinstance(data.get("data"), dict):
        return data["data"]  # older paths nest the return load one level down
    return data


def _return_fun(jid, minion, data, ignore_funs=ALWAYS_IGNORED):
    """
    The function name of a ``salt/job/<jid>/ret/<minion>`` event whose data
    (unwrapped) can be a minion's return, or ``None`` when its function is
    ignored.  Raises :py:class:`Refused` otherwise.  Cheap: nothing is serialised.
    """
    _check_jid(jid, data)
    _check_minion_id(minion)
    if data.get("id") != minion:
        raise Refused(f"data.id {str(data.get('id'))[:80]!r} disagrees with the tag")
    if "return" not in data:
        raise Refused("the event has no return")
    fun = _fun_name(data.get("fun"))
    return None if _is_ignored(fun, ignore_funs) else fun


def _return_row(jid, minion, data, ignore_funs=ALWAYS_IGNORED):
    """
    The ``salt_returns`` row for a ``salt/job/<jid>/ret/<minion>`` event, as
    the mysql returner would write it, or ``None`` when its function is ignored.
    Raises :py:class:`Refused` for an event that cannot be a minion's return.
    """
    data = _unwrap(data)
    fun = _return_fun(jid, minion, data, ignore_funs)
    if fun is None:
        return None
    ret = _to_json(data["return"])
    return ReturnRow(
        # The column is varchar(50); the whole name stays in full_ret.
        fun=fun[:FUN_WIDTH],
        jid=jid,
        ret=ret,
        id=minion,
        # The returner writes the bool, which the driver turns into '1'/'0'.
        success="1" if data.get("success", False) == 1 else "0",
        full_ret=_with_json_return(data, ret),
    )


def _with_json_return(data, ret):
    """
    ``data`` as JSON, with ``ret``, its return already as JSON, put in last:
    the return, most of a big event, is serialised once, not twice.
    """
    rest = _to_json({key: value for key, value in data.items() if key != "return"})
    return f'{rest[:-1]}{", " if len(rest) > 2 else ""}"return": {ret}}}'


def _load_row(jid, data):
    """
    The ``jids`` row for a ``salt/job/<jid>/new`` event: the job's load as JSON.
    Raises :py:class:`Refused` for an event that cannot be a job's load.
    """
    if not isinstance(data, dict):
        raise Refused("the event data is not a mapping")
    _check_jid(jid, data)
    _fun_name(data.get("fun"))
    return LoadRow(jid=jid, load=_to_json(data))


def _is_trimmed(data):
    """
    True when the event bus cut a value of this return (``max_event_size``).
    """
    ret = data.get("return")
    if ret == TRIMMED:
        return True
    return isinstance(ret, dict) and any(value == TRIMMED for value in ret.values())


def _with_job_cache(data, cached_ret, job_fun=None):
    """
    The return event ``data`` with what the master's job cache holds for it:
    its return, retcode, success and outputter replace the event's.  Raises
    :py:class:`Refused` when the event names another function than the job
    (``job_fun``, when known).
    """
    if job_fun is not None and job_fun != data.get("fun"):
        raise Refused(f"the event's function disagrees with the job's ({str(job_fun)[:50]})")
    merged = {key: value for key, value in data.items() if key not in ("return", "retcode", "success", "out")}
    merged.update(cached_ret)
    return merged


def _oversize(row):
    """
    Why ``row`` cannot go into its table as it is (a value bigger than
    ``mediumtext``), or ``None``.
    """
    if isinstance(row, DeadLetter):
        return None  # longtext
    for name, value in zip(row._fields, row):
        if isinstance(value, str) and not _fits(value, TEXT_BYTES):
            size = len(value.encode("utf-8"))
            return f"{name} is {size} bytes, more than a mediumtext column holds"
    return None


def _fits(text, limit):
    # Counting bytes means encoding: only when the text may be near the limit.
    return len(text) * 4 <= limit or len(text.encode("utf-8")) <= limit


def _dead_letter(row, reason):
    """
    The ``eventstore_dead_letters`` row that keeps ``row`` whole, with why it
    could not be stored.
    """
    if isinstance(row, DeadLetter):
        return row
    if isinstance(row, ReturnRow):
        return DeadLetter(row.jid, row.id, row.fun, reason[:1000], row.full_ret)
    return DeadLetter(row.jid, "", "", reason[:1000], row.load)


def _glob_to_like(glob):
    """
    Turn a shell glob (``web*``, ``state.*``) into a SQL LIKE pattern with ``!``
    as its escape character.
    """
    out = []
    for char in glob:
        if char in "!%_":
            out.append("!" + char)
        elif char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        else:
            out.append(char)
    return "".join(out)


# ---------------------------------------------------------------------------
# The master's job cache (local_cache): the ground truth a return is checked
# against, and where the whole of a trimmed return is found.
# ---------------------------------------------------------------------------


class _JobCache:
    """
    Reads one minion's return of one job straight from local_cache's files
    (``<cachedir>/jobs/<hash>/<minion>/return.p``): asking the returner API
    (``local_cache.get_jid``) would read every minion's return for each one.
    """

    def __init__(self, opts):
        self.job_dir = os.path.join(opts.get("cachedir", "/var/cache/salt/master"), "jobs")
        self.hash_type = opts.get("hash_type", "sha256")
        self._funs = {}

    def _read(self, *parts):
        path = os.path.join(salt.utils.jid.jid_dir(parts[0], self.job_dir, self.hash_type), *parts[1:])
        try:
            with open(path, "rb") as handle:
                return salt.payload.load(handle)
        except FileNotFoundError:
            return None

    def ret(self, jid, minion):
        ret = self._read(jid, minion, "return.p")
        if ret is None:
            return None
        out = self._read(jid, minion, "out.p")
        if out is not None:
            ret["out"] = out
        return ret

    def ready(self, jid, minion=None, out=False):
        """
        True once the job cache holds the job's load (``minion`` None) or the
        minion's return, with its outputter when ``out``: the master writes
        return.p and out.p one after the other.  Cheap: no file is read.
        """
        folder = salt.utils.jid.jid_dir(jid, self.job_dir, self.hash_type)
        if minion is None:
            return os.path.exists(os.path.join(folder, ".load.p"))
        return os.path.exists(os.path.join(folder, minion, "return.p")) and (
            not out or os.path.exists(os.path.join(folder, minion, "out.p"))
        )

    def fun(self, jid):
        """
        The function of a job, or ``None``: read once per job (a job's
        function never changes), not once per return.
        """
        fun = self._funs.get(jid)
        if fun is None:
            fun = (self.load(jid, minions=False) or {}).get("fun")
            if fun is not None:
                if len(self._funs) >= 1024:
                    self._funs.clear()
                self._funs[jid] = fun
        return fun

    def load(self, jid, minions=True):
        load = self._read(jid, ".load.p")
        if minions and load is not None and "minions" not in load:
            minions = self._read(jid, ".minions.p")
            if minions is not None:
                load["minions"] = sorted(minions)
        return load


def _wait_for(read, timeout):
    """
    ``read()`` until it gives something other than ``None`` or ``timeout``
    seconds pass: the master writes its job cache just after it fires the event.
    """
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        found = read()
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(pause)
        pause = min(pause * 2, 0.25)


# ---------------------------------------------------------------------------
# Storage: the SQL is written once, in MySQL's quoting and placeholders; the
# SQLite store translates the placeholders and the duplicate clause.
# ---------------------------------------------------------------------------

_MYSQL_TABLES = (
    """CREATE TABLE IF NOT EXISTS `jids` (
  `jid` varchar(255) NOT NULL,
  `load` mediumtext NOT NULL,
  UNIQUE KEY `jid` (`jid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    """CREATE TABLE IF NOT EXISTS `salt_returns` (
  `fun` varchar(50) NOT NULL,
  `jid` varchar(255) NOT NULL,
  `return` mediumtext NOT NULL,
  `id` varchar(255) NOT NULL,
  `success` varchar(10) NOT NULL,
  `full_ret` mediumtext NOT NULL,
  `alter_time` TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  KEY `id` (`id`),
  KEY `jid` (`jid`),
  KEY `fun` (`fun`),
  UNIQUE KEY `jid_id` (`jid`, `id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    """CREATE TABLE IF NOT EXISTS `eventstore_dead_letters` (
  `jid` varchar(255) NOT NULL,
  `id` varchar(255) NOT NULL,
  `fun` varchar(50) NOT NULL,
  `reason` varchar(1000) NOT NULL,
  `data` longtext NOT NULL,
  `alter_time` TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  UNIQUE KEY `jid_id` (`jid`, `id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
)

_SQLITE_TABLES = (
    """CREATE TABLE IF NOT EXISTS `jids` (
  `jid` varchar(255) NOT NULL UNIQUE,
  `load` mediumtext NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS `salt_returns` (
  `fun` varchar(50) NOT NULL,
  `jid` varchar(255) NOT NULL,
  `return` mediumtext NOT NULL,
  `id` varchar(255) NOT NULL,
  `success` varchar(10) NOT NULL,
  `full_ret` mediumtext NOT NULL,
  `alter_time` TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (`jid`, `id`)
)""",
    "CREATE INDEX IF NOT EXISTS `salt_returns_id` ON `salt_returns` (`id`)",
    "CREATE INDEX IF NOT EXISTS `salt_returns_fun` ON `salt_returns` (`fun`)",
    """CREATE TABLE IF NOT EXISTS `eventstore_dead_letters` (
  `jid` varchar(255) NOT NULL,
  `id` varchar(255) NOT NULL,
  `fun` varchar(50) NOT NULL,
  `reason` varchar(1000) NOT NULL,
  `data` longtext NOT NULL,
  `alter_time` TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (`jid`, `id`)
)""",
)


def _insert_sql(table, columns):
    # One row per unique key: the first copy wins, later ones are no-ops.  Not
    # INSERT IGNORE, which would also turn a too-long value into a cut one.
    return (
        f"INSERT INTO `{table}` ({', '.join(f'`{c}`' for c in columns)})"
        f" VALUES ({', '.join(['%s'] * len(columns))}) ON DUPLICATE KEY UPDATE `jid` = `jid`"
    )


_INSERT = {table: _insert_sql(table, columns) for table, columns in TABLES.values()}
_SELECT_JID = "SELECT `id`, `full_ret` FROM `salt_returns` WHERE `jid` = %s ORDER BY `id`"
_SELECT_DEAD_JID = "SELECT `id`, `reason` FROM `eventstore_dead_letters` WHERE `jid` = %s"
_SELECT_LATEST = (
    "SELECT `jid`, `id`, `fun`, `success`, `alter_time`, `full_ret` FROM `salt_returns`"
    " {where} ORDER BY `jid` DESC, `id` LIMIT %s"
)


class _Store:
    """
    One connection per thread (the reactor stores from up to
    ``reactor_worker_threads`` threads at once), reused across calls.
    """

    dialect = None
    tables = ()
    lost_connection = ()

    def __init__(self, config):
        self.config = config
        self._local = threading.local()

    def sql(self, statement):
        return statement

    def connect(self):
        raise NotImplementedError

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

    def run(self, work):
        """
        Run ``work(cursor)`` in one transaction on this thread's connection and
        commit.  A connection the server dropped (idle timeout, restart) is
        replaced once; all our writes are idempotent, so the retry is safe.
        """
        for attempt in (1, 2):
            conn = self._connection()
            try:
                cur = conn.cursor()
                try:
                    result = work(cur)
                finally:
                    cur.close()
                conn.commit()
                return result
            except self.lost_connection:
                self._drop_connection()
                if attempt == 2:
                    raise
            except Exception:
                try:
                    conn.rollback()
                except Exception:  # pylint: disable=broad-except
                    self._drop_connection()
                raise

    def create_tables(self):
        def work(cur):
            for statement in self.tables:
                cur.execute(statement)

        self.run(work)

    def insert(self, rows):
        """
        Insert rows of one type in one transaction; how many were new (a row
        whose key is stored already is left as it is).
        """
        table, _ = TABLES[type(rows[0])]
        statement = self.sql(_INSERT[table])
        limit = self.max_row_bytes()
        for row in rows:
            if not _fits("".join(value for value in row if isinstance(value, str)), limit):
                raise RowTooBig(f"the row is bigger than {self.describe()} takes in one statement")

        def work(cur):
            cur.executemany(statement, [tuple(row) for row in rows])
            return cur.rowcount

        return self.run(work)

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


class RowTooBig(ValueError):
    """
    A row bigger than the database takes in one statement (MySQL's
    ``max_allowed_packet``): sending it would only make the server hang up.
    """


def _mysql_escape(text):
    """
    ``text`` escaped for a quoted MySQL string literal, exactly as PyMySQL's
    ``escape_string`` does it (backslash escapes).
    """
    return (
        text.replace("\\", "\\\\")
        .replace("\0", "\\0")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\032", "\\Z")
        .replace("'", "\\'")
        .replace('"', '\\"')
    )


if HAS_PYMYSQL:

    class _Connection(pymysql.connections.Connection):
        """
        PyMySQL escapes text one character at a time (``str.translate`` with
        a table of strings): 0.9 ms for a 40 kB state return, half of what
        storing it costs.  One ``str.replace`` per character to escape gives
        the same literal six times faster.
        """

        def escape(self, obj, mapping=None):
            if type(obj) is str and not (  # pylint: disable=unidiomatic-typecheck
                self.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES
            ):
                return "'" + _mysql_escape(obj) + "'"
            return super().escape(obj, mapping)


# MySQL errors about the row itself: data too long, bad string, packet too big.
_MYSQL_ROW_ERRNOS = {1153, 1366, 1406, 1264, 1265, 1292}


class _MySQLStore(_Store):
    dialect = "mysql"
    tables = _MYSQL_TABLES
    if HAS_PYMYSQL:
        lost_connection = (pymysql.err.OperationalError, pymysql.err.InterfaceError)

    def connect(self):
        opts = self.config.mysql
        ssl = {
            name: opts[f"ssl_{name}"] for name in ("ca", "cert", "key") if opts.get(f"ssl_{name}")
        }
        return _Connection(
            host=opts["host"],
            port=opts["port"],
            user=opts["user"],
            password=opts["pass"] or "",
            database=opts["db"],
            ssl=ssl or None,
            charset="utf8mb4",
            # UTC: query() shows alter_time as SQLite's CURRENT_TIMESTAMP does.
            # Strict: a value too long for its column fails instead of being
            # cut silently, whatever the server's default sql_mode.
            init_command="SET time_zone = '+00:00', sql_mode = CONCAT_WS(',',"
            " NULLIF(@@sql_mode, ''), 'STRICT_TRANS_TABLES')",
            # A dead server must not hold a reactor thread for long.
            connect_timeout=3,
            read_timeout=60,
            write_timeout=60,
            autocommit=False,
        )

    def max_row_bytes(self):
        # A statement bigger than max_allowed_packet makes the server drop the
        # connection, which looks like an outage: never send one.
        packet = getattr(self, "_packet", None)
        if packet is None:
            packet = self._packet = int(self.select("SELECT @@max_allowed_packet", ())[0][0])
        return packet - 65536

    def is_row_error(self, exc):
        if isinstance(exc, (RowTooBig, pymysql.err.DataError, pymysql.err.IntegrityError)):
            return True
        return bool(exc.args) and exc.args[0] in _MYSQL_ROW_ERRNOS

    def describe(self):
        opts = self.config.mysql
        return f"mysql://{opts['user']}@{opts['host']}:{opts['port']}/{opts['db']}"


class _SQLiteStore(_Store):
    dialect = "sqlite"
    tables = _SQLITE_TABLES
    lost_connection = ()

    def sql(self, statement):
        return (
            statement.replace("%s", "?")
            .replace("ON DUPLICATE KEY UPDATE `jid` = `jid`", "ON CONFLICT DO NOTHING")
            .replace("CHAR_LENGTH(", "LENGTH(")
        )

    def connect(self):
        path = self.config.sqlite_path
        if not os.path.exists(path):
            # Returns can hold secrets: the file is the master's alone.
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(path, timeout=10)
        # WAL lets salt-run read while the reactor writes, from another process.
        conn.execute("PRAGMA journal_mode=WAL")
        # The zero-setup backend makes its own tables, once per connection.
        for statement in self.tables:
            conn.execute(statement)
        conn.commit()
        return conn

    def is_row_error(self, exc):
        # OperationalError (locked, cannot open, disk full) is about the database.
        return isinstance(
            exc, (RowTooBig, sqlite3.DataError, sqlite3.IntegrityError, sqlite3.InterfaceError)
        )

    def describe(self):
        return f"sqlite://{self.config.sqlite_path}"


_STORES = {"mysql": _MySQLStore, "sqlite": _SQLiteStore}


# ---------------------------------------------------------------------------
# The spool: rows the database could not take, one fsynced file each, safe
# for any number of threads and processes (each file is written whole under a
# temporary name, then renamed; writing a row back twice is a no-op).
# ---------------------------------------------------------------------------


class _Spool:
    def __init__(self, path):
        self.path = path
        self.dead = os.path.join(path, "dead")

    def put(self, row, folder=None):
        folder = folder or self.path
        os.makedirs(folder, mode=0o700, exist_ok=True)
        table, _ = TABLES[type(row)]
        # Oldest first by name: nanoseconds, then a random part for uniqueness;
        # dead letters by jid, so that query() finds them.
        first = row.jid if folder == self.dead else f"{time.time_ns():020d}"
        name = f"{first}-{uuid.uuid4().hex[:12]}-{table}.json"
        temp = os.path.join(folder, f".{name}.tmp")
        fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(fd, json.dumps({"table": table, "row": list(row)}).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, os.path.join(folder, name))
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def names(self, limit=None, folder=None):
        try:
            names = sorted(
                entry.name
                for entry in os.scandir(folder or self.path)
                if entry.name.endswith(".json") and entry.is_file()
            )
        except FileNotFoundError:
            return []
        return names if limit is None else names[:limit]

    def read(self, name, folder=None):
        """
        The row spooled as ``name``, or ``None`` when another thread or process
        has written it back already.
        """
        try:
            with open(os.path.join(folder or self.path, name), encoding="utf-8") as handle:
                spooled = json.load(handle)
        except FileNotFoundError:
            return None
        return ROW_TYPES[spooled["table"]](*spooled["row"])

    def remove(self, name):
        try:
            os.unlink(os.path.join(self.path, name))
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------------------
# The writer: rows go to the database, or to the spool while it is down.
# ---------------------------------------------------------------------------


class _Writer:
    """
    Writes rows, deciding between the database, the spool and the dead
    letters.  While the database is down, rows go straight to the spool and
    only one thread at a time, after a pause that grows from 1 s to 30 s,
    tries the database again.
    """

    def __init__(self, db, spool):
        self.db = db
        self.spool = spool
        self._lock = threading.Lock()
        self._probe = threading.Lock()
        self._replaying = threading.Lock()
        self._outage = None  # why the database is down, while it is
        self._retry_at = 0.0
        self._pause = 0.0
        # Unknown at start (an earlier process may have spooled): look once.
        self._spool_pending = True

    def write(self, row):
        """
        Write one row: ``stored``, ``duplicate``, ``spooled`` or ``dead-lettered``.
        """
        counts = self.write_many([row])
        return next(verdict for verdict, count in counts.items() if count)

    def write_many(self, rows):
        """
        Write rows, each table's in one transaction (row by row only when the
        database refuses one of them); how many were ``stored``, ``duplicate``,
        ``spooled`` and ``dead-lettered``.  Raises only when neither the
        database nor the spool takes them.
        """
        counts = dict.fromkeys(VERDICTS, 0)
        tables = {}
        for row in rows:
            reason = None if isinstance(row, DeadLetter) else _oversize(row)
            if isinstance(row, DeadLetter) or reason:
                counts[self._keep_dead(_dead_letter(row, reason) if reason else row)] += 1
            else:
                tables.setdefault(type(row), []).append(row)
        for batch in tables.values():
            self._write_batch(batch, counts)
        if counts["stored"] or counts["duplicate"]:
            self.replay(REPLAY_BATCH)
        return counts

    def _write_batch(self, batch, counts):
        # While the database is down, only the thread that claims the probe
        # tries it, after the pause; the others spool.
        probing = self._outage is not None and self._claim_probe()
        if self._outage is not None and not probing:
            self._spool_all(batch, counts)
            return
        try:
            added, dead = self._insert_rows(batch)
        except Exception as exc:  # pylint: disable=broad-except
            self._went_down(exc)
            self._spool_all(batch, counts)
            return
        finally:
            if probing:
                self._probe.release()
        self._came_up()
        counts["stored"] += added
        counts["dead-lettered"] += dead
        counts["duplicate"] += len(batch) - added - dead

    def _spool_all(self, rows, counts):
        for row in rows:
            self._spool(row)
            counts["spooled"] += 1

    def _claim_probe(self):
        # After the pause, one thread tries the database; the others spool.
        with self._lock:
            if time.monotonic() < self._retry_at:
                return False
        return self._probe.acquire(blocking=False)

    def _went_down(self, exc):
        with self._lock:
            if self._outage is None:
                log.warning(
                    "eventstore: %s is unavailable (%s); spooling rows to %s until it is back",
                    self.db.describe(),
                    exc,
                    self.spool.path,
                )
                self._outage = str(exc)
            self._pause = min(max(self._pause * 2, 1.0), 30.0)
            self._retry_at = time.monotonic() + self._pause

    def _came_up(self):
        with self._lock:
            if self._outage is None:
                return
            log.warning("eventstore: %s is back; writing the spool back", self.db.describe())
            self._outage, self._pause = None, 0.0

    def _spool(self, row):
        self.spool.put(row)
        self._spool_pending = True

    def _keep_dead(self, letter):
        """
        Keep a row the database will not take in the dead letters (or, when even
        that table refuses it, in the spool's ``dead`` folder).
        """
        log.error(
            "eventstore: keeping the %s of job %s as a dead letter: %s",
            f"return of {letter.id}" if letter.id else "load",
            letter.jid,
            letter.reason,
        )
        if self._outage is not None:
            self._spool(letter)
            return "dead-lettered"
        try:
            self.db.insert([letter])
        except Exception as exc:  # pylint: disable=broad-except
            if self.db.is_row_error(exc):
                self.spool.put(letter, folder=self.spool.dead)
            else:
                self._went_down(exc)
                self._spool(letter)
        return "dead-lettered"

    def replay(self, limit, look=False):
        """
        Write back up to ``limit`` spooled rows; how many were written back.
        One thread of a process replays at a time; another process may replay
        the same rows at once, which costs a duplicate no-op each.  ``look``:
        read the spool even if this process spooled nothing since it was empty.
        """
        if look:
            self._spool_pending = True
        if not self._spool_pending or not self._replaying.acquire(blocking=False):
            return 0
        try:
            # Cleared before looking, so a row spooled meanwhile sets it again.
            self._spool_pending = False
            names = self.spool.names(limit)
            if len(names) == limit:
                self._spool_pending = True
            batches = {}
            for name in names:
                row = self.spool.read(name)
                if row is not None:  # else another process wrote it back
                    batches.setdefault(type(row), []).append((name, row))
            done = 0
            for batch in batches.values():
                try:
                    self._insert_rows([row for _, row in batch])
                except Exception as exc:  # pylint: disable=broad-except
                    self._spool_pending = True
                    self._went_down(exc)
                    break
                for name, _ in batch:
                    self.spool.remove(name)
                done += len(batch)
            if done and not self.spool.names(1):
                log.warning("eventstore: the spool is written back to %s", self.db.describe())
            return done
        finally:
            self._replaying.release()

    def _insert_rows(self, rows):
        """
        Insert rows of one type in one transaction; if the database refuses one
        of them, row by row, keeping the refused ones as dead letters.  Returns
        how many were new and how many were dead-lettered.  Raises when the
        database is unavailable.
        """
        try:
            return self.db.insert(rows), 0
        except Exception as exc:  # pylint: disable=broad-except
            if not self.db.is_row_error(exc):
                raise
        # It answered: it is up, so the dead letters go to it, not the spool.
        self._came_up()
        added = dead = 0
        for row in rows:
            try:
                added += self.db.insert([row])
            except Exception as exc:  # pylint: disable=broad-except
                if not self.db.is_row_error(exc):
                    raise
                self._keep_dead(_dead_letter(row, f"the database refused it: {exc}"))
                dead += 1
        return added, dead


Runtime = namedtuple("Runtime", "config writer job_cache")

# Built on first use and kept for the life of the loaded module, so a stored
# return costs neither config parsing nor a new connection.
_STATE = {"runtime": None}
_STATE_LOCK = threading.Lock()


def _runtime():
    runtime = _STATE["runtime"]
    if runtime is None:
        with _STATE_LOCK:
            runtime = _STATE["runtime"]
            if runtime is None:
                config = _resolve_config(__opts__)
                writer = _Writer(_STORES[config.backend](config), _Spool(config.spool_dir))
                runtime = _STATE["runtime"] = Runtime(config, writer, _JobCache(__opts__))
    return runtime


def _store():
    return _runtime().writer.db


def _schema_sql(dialect):
    """
    The DDL of ``sql/<dialect>.sql``, from the same statements :py:func:`init` runs.
    """
    tables = _STORES[dialect].tables
    head = (
        f"-- eventstore schema for {dialect}: the mysql returner's jids and salt_returns,\n"
        "-- plus one row per (jid, minion).  Generated by `make sql` from _runners/eventstore.py.\n"
    )
    return head + "\n".join(statement + ";\n" for statement in tables)


def _write_schema_files(folder):
    for dialect in _STORES:
        with open(os.path.join(folder, f"{dialect}.sql"), "w", encoding="utf-8") as handle:
            handle.write(_schema_sql(dialect))


# ---------------------------------------------------------------------------
# The runner functions.
# ---------------------------------------------------------------------------


def __virtual__():
    try:
        backend = _resolve_config(__opts__).backend
    except ValueError as exc:
        return False, str(exc)
    if backend == "mysql" and not HAS_PYMYSQL:
        return (
            False,
            "eventstore: the mysql backend needs PyMySQL, which is not installed "
            "(pip install pymysql; on onedir masters: salt-pip install pymysql)",
        )
    return __virtualname__


def store(tag, data):
    """
    Store one job event: what the reactor calls for ``salt/job/*/new`` and
    ``salt/job/*/ret/*``.

    A minion's return becomes one ``salt_returns`` row, a job's load one
    ``jids`` row, at most once each: a return that arrives again is not
    stored twice.  Returns of ``saltutil.find_job`` and of the functions in
    ``eventstore:ignore_funs`` are not stored, nor are other tags.  Returns a
    one-word result (``stored``, ``duplicate``, ``ignored``, ``refused`` or
    ``failed``), because Salt fires it back onto the event bus.

    tag
        The event's tag.

    data
        The event's data.

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.store tag=salt/job/20260101120000000000/ret/web1 \\
            data='{"id": "web1", "jid": "20260101120000000000", "fun": "test.ping", "return": true, "success": true}'
    """
    counts = store_events([{"tag": tag, "data": data}])
    return next(verdict for verdict, count in counts.items() if count)


def store_events(events):
    """
    Store many job events at once, as :py:func:`store` stores one: what the
    eventstore engine calls with each batch it reads from the master's event
    bus.  Each table's rows are written in one transaction; returns are
    checked against the master job cache with one wait for the whole batch.

    events
        A list of events, each a mapping with the event's ``tag`` and ``data``.

    Returns how many events were ``stored``, ``duplicate``, ``ignored``,
    ``refused``, ``spooled``, ``dead-lettered`` and ``failed`` (neither stored
    nor spooled).

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.store_events \\
            events='[{"tag": "salt/job/20260101120000000000/ret/web1", "data": {"id": "web1", "jid": "20260101120000000000", "fun": "test.ping", "return": true, "success": true}}]'
    """
    # No __context__["retcode"] here: the reactor shares one context between
    # all its runner calls, so one failure would mark every later job failed.
    counts = dict.fromkeys(("stored", "duplicate", "ignored", "refused", "spooled",
                            "dead-lettered", "failed"), 0)
    jobs = []
    for event in events or ():
        tag = event.get("tag") if isinstance(event, dict) else None
        parsed = _parse_tag(tag)
        if parsed is None:
            counts["ignored"] += 1
        else:
            jobs.append((tag, *parsed, event.get("data")))
    runtime = _runtime()
    _await_job_cache(runtime, jobs)
    rows = []
    for tag, kind, jid, minion, data in jobs:
        try:
            row = _checked_row(runtime, kind, jid, minion, data, wait=0)
        except Refused as exc:
            log.warning("eventstore: not storing %s: %s", tag[:300], exc)
            counts["refused"] += 1
            continue
        if row is None:
            counts["ignored"] += 1
        else:
            rows.append(row)
    if not rows:
        return counts
    try:
        for verdict, count in runtime.writer.write_many(rows).items():
            counts[verdict] += count
    except Exception as exc:  # pylint: disable=broad-except
        # Neither the database nor the spool took them (disk full?).  A
        # driver's error text holds no credentials; the event data is not logged.
        log.error("eventstore: could not store nor spool %d rows: %s", len(rows), exc)
        counts["failed"] += len(rows)
    return counts


def _job_cache_key(config, kind, jid, minion, data):
    """
    What :py:func:`_checked_row` will read from the job cache for this event,
    as arguments of ``_JobCache.ready``, or ``None``.  Raises
    :py:class:`Refused` for an event that cannot be a return.
    """
    if kind == "new":
        return (jid,) if config.verify_returns else None
    data = _unwrap(data)
    if _return_fun(jid, minion, data, config.ignore_funs) is None:
        return None
    if config.verify_returns or _is_trimmed(data):
        return (jid, minion, "out" in data)
    return None


def _await_job_cache(runtime, jobs):
    """
    Wait, once for all the events, up to ``job_cache_wait`` seconds, until
    the master job cache holds what their rows are checked against: the
    master writes it just after it fires the event.  A return of a job whose
    load is not in the cache is not waited for: the master writes the load
    before it publishes the job, so that return is forged.
    """
    config, job_cache = runtime.config, runtime.job_cache
    waiting = []
    for _, kind, jid, minion, data in jobs:
        try:
            key = _job_cache_key(config, kind, jid, minion, data)
        except Refused:
            continue  # refused when its row is built
        if key is None or job_cache.ready(*key):
            continue
        if kind == "ret" and config.verify_returns and not job_cache.ready(jid):
            continue
        waiting.append(key)

    def all_there():
        waiting[:] = [key for key in waiting if not job_cache.ready(*key)]
        return True if not waiting else None

    if waiting:
        _wait_for(all_there, config.job_cache_wait)


def _checked_row(runtime, kind, jid, minion, data, wait=None):
    """
    The row for one event; with ``verify_returns``, built from the master's
    job cache, which also completes a return the event bus trimmed.  ``wait``:
    how long to wait for the job cache (default ``job_cache_wait``).
    """
    config, job_cache = runtime.config, runtime.job_cache
    wait = config.job_cache_wait if wait is None else wait
    if kind == "new":
        row = _load_row(jid, data)
        if config.verify_returns:
            load = _wait_for(lambda: job_cache.load(jid), wait)
            if load is None:
                raise Refused("the master job cache has no such job: forged, or not local_cache")
            row = _load_row(jid, load)
        return row
    data = _unwrap(data)
    if not (config.verify_returns or _is_trimmed(data)):
        return _return_row(jid, minion, data, config.ignore_funs)
    # Checked, but not serialised: the row is built from the job cache's copy.
    if _return_fun(jid, minion, data, config.ignore_funs) is None:
        return None
    cached = _wait_for(lambda: job_cache.ret(jid, minion), wait)
    if cached is None:
        if config.verify_returns:
            raise Refused("the master job cache has no such return: forged, or not local_cache")
        row = _return_row(jid, minion, data, config.ignore_funs)
        return _dead_letter(row, "the event bus trimmed it and the job cache does not have it")
    job_fun = job_cache.fun(jid) if config.verify_returns else None
    return _return_row(jid, minion, _with_job_cache(data, cached, job_fun), config.ignore_funs)


def init():
    """
    Create the ``jids``, ``salt_returns`` and ``eventstore_dead_letters``
    tables if they are missing, on the configured backend.  Safe to run again.  The database user needs the
    CREATE and INDEX privileges for this one step only.

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.init
    """
    store_ = _store()
    try:
        store_.create_tables()
    except Exception as exc:  # pylint: disable=broad-except
        __context__["retcode"] = 1
        return f"Could not create the tables in {store_.describe()}: {exc}"
    return f"Tables jids, salt_returns and eventstore_dead_letters are ready in {store_.describe()}"


def _dead_letters_of(jid):
    """
    ``(minion, reason)`` of each dead letter of a job, from the table and from
    the spool's ``dead`` folder (those even the dead-letter table refused).
    """
    writer = _runtime().writer
    letters = list(writer.db.select(_SELECT_DEAD_JID, (jid,)))
    spool = writer.spool
    for name in spool.names(folder=spool.dead):
        if name.startswith(f"{jid}-"):
            letter = spool.read(name, folder=spool.dead)
            if letter is not None:
                letters.append((letter.id, letter.reason))
    return letters


def _truthy(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y", "on")
    return bool(value)


def query(jid=None, minion=None, fun=None, success=None, limit=20):
    """
    Read stored returns back.

    With ``jid``: ``{minion: return}`` for that job, as ``salt-run
    jobs.lookup_jid`` prints it (a state run prints with the highstate
    outputter).  Without: the latest stored returns, newest job first, each
    with its jid, minion, function, success and time, filtered by:

    jid
        A job id.

    minion
        A minion id or shell glob (``web*``).

    fun
        A function name or shell glob (``state.*``).

    success
        ``True`` for successful returns only, ``False`` for failed ones only.

    limit : 20
        How many returns to list at most (without ``jid``).

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.query jid=20260101120000000000
        salt-run eventstore.query minion='web*' fun=state.apply success=False limit=5
    """
    store_ = _store()
    if jid is not None:
        returns, outputter = {}, None
        for minion_id, full_ret in store_.select(_SELECT_JID, (str(jid),)):
            full = json.loads(full_ret)
            returns[minion_id] = full.get("return")
            outputter = outputter or full.get("out")
        for minion_id, reason in _dead_letters_of(str(jid)):
            if minion_id:
                returns.setdefault(minion_id, f"Not stored: {reason} (see eventstore.status)")
        return {"outputter": outputter, "data": returns} if outputter else returns

    where, params = [], []
    if minion is not None:
        where.append("`id` LIKE %s ESCAPE '!'")
        params.append(_glob_to_like(str(minion)))
    if fun is not None:
        # A name longer than the column is stored cut: let every cut name
        # through here and match the whole name, from full_ret, below.
        where.append(f"(`fun` LIKE %s ESCAPE '!' OR CHAR_LENGTH(`fun`) = {FUN_WIDTH})")
        params.append(_glob_to_like(str(fun)))
    if success is not None:
        where.append("`success` = %s")
        params.append("1" if _truthy(success) else "0")
    params.append(int(limit))
    statement = _SELECT_LATEST.format(where=("WHERE " + " AND ".join(where)) if where else "")
    rows = []
    for row_jid, minion_id, row_fun, row_success, alter_time, full_ret in store_.select(
        statement, tuple(params)
    ):
        full = json.loads(full_ret)
        if fun is not None and not fnmatch.fnmatchcase(_fun_name(full.get("fun", row_fun)), str(fun)):
            continue
        rows.append(
            {
                "jid": row_jid,
                "minion": minion_id,
                "fun": _fun_name(full.get("fun", row_fun)),
                "success": row_success == "1",
                "time": str(alter_time),
                "return": full.get("return"),
            }
        )
    return rows


def replay():
    """
    Write the spool (rows kept on disk while the database was unavailable)
    back to the database now, instead of waiting for the next stored return.
    Exits non-zero when rows are left because the database is still down.

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.replay
    """
    writer = _runtime().writer
    written = writer.replay(REPLAY_BATCH, look=True)
    while written and written % REPLAY_BATCH == 0 and writer.spool.names(1):
        step = writer.replay(REPLAY_BATCH, look=True)
        if not step:
            break
        written += step
    left = len(writer.spool.names())
    if left:
        __context__["retcode"] = 1
    return {
        "written back": written,
        "left in the spool": left,
        "spool": writer.spool.path,
        "dead letters on disk": len(writer.spool.names(folder=writer.spool.dead)),
    }


def _jid_hours_ago(hours, opts):
    # Jids are the master's local time, or UTC with utc_jid.
    now = datetime.datetime.utcnow() if opts.get("utc_jid") else datetime.datetime.now()
    return (now - datetime.timedelta(hours=float(hours))).strftime("%Y%m%d%H%M%S%f")


def backfill(jid=None, hours=24):
    """
    Copy into the database every job load and return that the master job
    cache holds and the database lacks: returns the reactor never saw (the
    master was down, the reactor queue was full, eventstore was not yet
    installed).  Reads the job cache through Salt's returner API
    (``master_job_cache``, ``local_cache`` by default), so it reaches back
    ``keep_jobs_seconds`` (24 h by default) at most.  Safe to run again: a row
    stored already is left as it is.

    jid
        Only this job.

    hours : 24
        Only jobs started in the last ``hours`` hours (ignored with ``jid``).

    To run it every hour from the master, add to the master config:

    .. code-block:: yaml

        schedule:
          eventstore_backfill:
            function: eventstore.backfill
            hours: 1
            kwargs:
              hours: 2

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.backfill
        salt-run eventstore.backfill hours=72
        salt-run eventstore.backfill jid=20260101120000000000
    """
    runtime = _runtime()
    cache = __opts__.get("master_job_cache", "local_cache")
    returners = salt.loader.returners(__opts__, {})
    if jid is not None:
        jids = [str(jid)]
    else:
        oldest = _jid_hours_ago(hours, __opts__)
        jids = sorted(j for j in returners[f"{cache}.get_jids"]() if str(j) >= oldest)
    counts = {"jobs read": 0, "loads added": 0, "returns added": 0, "spooled": 0, "refused": 0}
    for job in jids:
        load = returners[f"{cache}.get_load"](job)
        if not load or str(load.get("fun", "")).startswith(("runner.", "wheel.")):
            continue  # gone, or the master's own runner and wheel jobs
        counts["jobs read"] += 1
        rows = []
        try:
            load = dict(load, jid=job)
            if "Minions" in load:  # local_cache.get_load adds it; events say minions
                load["minions"] = sorted(load.pop("Minions"))
            rows.append(_load_row(job, load))
            for minion_id, ret in returners[f"{cache}.get_jid"](job).items():
                data = {"id": minion_id, "jid": job, "fun": load["fun"], "fun_args": load.get("arg", [])}
                data.update(ret)
                rows.append(_return_row(job, minion_id, data, runtime.config.ignore_funs))
        except Refused as exc:
            log.warning("eventstore: backfill skips job %s: %s", job, exc)
            counts["refused"] += 1
        for row in filter(None, rows):
            result = runtime.writer.write(row)
            if result == "stored":
                counts["loads added" if isinstance(row, LoadRow) else "returns added"] += 1
            elif result == "spooled":
                counts["spooled"] += 1
    return counts
