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

The configuration is read once per loaded module, not per stored return: after
a change, restart the master (the reactor keeps its loaded runners).

Operations
----------

``eventstore.jobs`` and ``eventstore.query`` find jobs and returns,
``eventstore.prune`` keeps the tables from growing forever (run it from the
master's ``schedule``), ``eventstore.status`` tells monitoring whether the
store is healthy, and ``eventstore.migrate`` upgrades a database made from the
mysql returner's documented schema.  ``salt-run -d eventstore`` prints each.
"""

import datetime
import fnmatch
import json
import logging
import os
import re
import threading
from collections import namedtuple

try:
    import pymysql

    HAS_PYMYSQL = True
except ImportError:
    HAS_PYMYSQL = False

import sqlite3

import salt.utils.jid

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

JID_PATTERN = re.compile(r"\d{20}(?:_[0-9A-Za-z]+)?")

ReturnRow = namedtuple("ReturnRow", "fun jid ret id success full_ret")
LoadRow = namedtuple("LoadRow", "jid load")


class Refused(ValueError):
    """
    An event that looks like ours but cannot be stored as it is; the message is
    the reason, logged with the event's tag.
    """


# ---------------------------------------------------------------------------
# Configuration: read once, from the master config.
# ---------------------------------------------------------------------------

Config = namedtuple("Config", "backend mysql sqlite_path ignore_funs")


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
    sqlite_path = own.get("sqlite_path") or os.path.join(
        opts.get("cachedir", "/var/cache/salt/master"), "eventstore.sqlite3"
    )
    ignore = tuple(ALWAYS_IGNORED) + tuple(
        glob for glob in own.get("ignore_funs") or () if glob not in ALWAYS_IGNORED
    )
    return Config(backend, mysql, sqlite_path, ignore)


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
    parts = tag.split("/", 4)
    if len(parts) == 4 and parts[3] == "new":
        return ("new", parts[2], None)
    if len(parts) == 5 and parts[3] == "ret":
        return ("ret", parts[2], parts[4])
    return None


def _to_json(obj):
    """
    JSON as the mysql returner writes it (``salt.utils.json.dumps``: UTF-8, not
    ASCII escapes), except that text which cannot be encoded as UTF-8 (lone
    surrogates) is written with ASCII escapes instead of failing: kept, not lost.
    """
    text = json.dumps(obj, ensure_ascii=False, default=_json_default)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj, ensure_ascii=True, default=_json_default)
    return text


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


def _check_jid(tag_jid, data):
    if not JID_PATTERN.fullmatch(tag_jid):
        raise Refused(f"the tag's jid {tag_jid!r} is not a job id")
    if "jid" in data and str(data["jid"]) != tag_jid:
        raise Refused(f"data.jid {str(data['jid'])[:40]!r} disagrees with the tag")


def _return_row(jid, minion, data, ignore_funs=ALWAYS_IGNORED):
    """
    The ``salt_returns`` row for a ``salt/job/<jid>/ret/<minion>`` event, as
    the mysql returner would write it, or ``None`` when its function is ignored.
    Raises :py:class:`Refused` for an event that cannot be a minion's return.
    """
    if not isinstance(data, dict):
        raise Refused("the event data is not a mapping")
    if "return" not in data and isinstance(data.get("data"), dict):
        data = data["data"]  # older paths nest the return load one level down
    _check_jid(jid, data)
    if not minion or data.get("id") != minion:
        raise Refused(f"data.id {str(data.get('id'))[:80]!r} disagrees with the tag")
    if "return" not in data:
        raise Refused("the event has no return")
    fun = data.get("fun")
    if not isinstance(fun, str) or not fun:
        raise Refused("the event has no function name")
    if _is_ignored(fun, ignore_funs):
        return None
    return ReturnRow(
        # The column is varchar(50); the whole name stays in full_ret.
        fun=fun[:FUN_WIDTH],
        jid=jid,
        ret=_to_json(data["return"]),
        id=minion,
        # The returner writes the bool, which the driver turns into '1'/'0'.
        success="1" if data.get("success", False) == 1 else "0",
        full_ret=_to_json(data),
    )


def _load_row(jid, data):
    """
    The ``jids`` row for a ``salt/job/<jid>/new`` event: the job's load as JSON.
    Raises :py:class:`Refused` for an event that cannot be a job's load.
    """
    if not isinstance(data, dict):
        raise Refused("the event data is not a mapping")
    _check_jid(jid, data)
    if not isinstance(data.get("fun"), str):
        raise Refused("the job load has no function name")
    return LoadRow(jid=jid, load=_to_json(data))


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
# Reading back: time windows and job listings.  Pure functions.
# ---------------------------------------------------------------------------

_UTC = datetime.timezone.utc
_RELATIVE_TIME = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
_TIME_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_TIME_FORMS = (
    "2026-11-26, '2026-11-26 12:00', ISO 8601 (2026-11-26T12:00:00+01:00), a jid,"
    " or an age: 30m, 2h, 3d, 1w"
)


def _now():
    return datetime.datetime.now(_UTC)


def _parse_time(value, now):
    """
    The moment ``value`` names, as an aware UTC datetime.  Accepts what people
    type: a date (``2026-11-26``, midnight), a date and time (``2026-11-26
    12:00``), ISO 8601 with or without an offset (``Z`` too), a jid (its start
    time), or an age meaning "ago": ``45s``, ``30m``, ``2h``, ``3d``, ``1w``.
    Times without an offset are UTC, like jids.  ``salt-run`` hands a jid over
    as an int and YAML may hand dates over as ``date``/``datetime``: both work.
    Raises ``ValueError`` naming the accepted forms.
    """
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, datetime.date):
        moment = datetime.datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        relative = _RELATIVE_TIME.fullmatch(text)
        if relative:
            amount, unit = relative.groups()
            return now - datetime.timedelta(**{_TIME_UNITS[unit.lower()]: int(amount)})
        try:
            if JID_PATTERN.fullmatch(text):
                moment = datetime.datetime.strptime(text[:20], "%Y%m%d%H%M%S%f")
            else:
                if text[-1:] in ("Z", "z"):
                    text = text[:-1] + "+00:00"
                moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a time; give {_TIME_FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_UTC)
    return moment.astimezone(_UTC)


def _time_to_jid(moment):
    """
    The 20-digit jid a job started at ``moment`` (an aware datetime) would get.
    """
    return f"{moment.astimezone(_UTC):%Y%m%d%H%M%S%f}"


def _jid_range(since=None, until=None, before=None, now=None):
    """
    ``(low, high)`` jid bounds for a time window, each ``None`` when open:
    jobs with ``low <= jid < high``.  ``since`` is inclusive, ``until``
    exclusive, ``before`` a jid (a page cursor: strictly older jobs).  Jids sort
    by start time, so the window is a range scan on the jid index.
    """

    def bound(name, value):
        try:
            return _time_to_jid(_parse_time(value, now))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None

    low = bound("since", since) if since is not None else None
    highs = [bound("until", until)] if until is not None else []
    if before is not None:
        before = str(before)
        if not JID_PATTERN.fullmatch(before):
            raise ValueError(f"before={before!r} is not a jid (a page cursor from 'next')")
        highs.append(before)
    return low, (min(highs) if highs else None)


def _jid_range_where(low, high):
    """
    SQL conditions and parameters for a :py:func:`_jid_range` on a ``jid`` column.
    """
    where, params = [], []
    if low is not None:
        where.append("`jid` >= %s")
        params.append(low)
    if high is not None:
        where.append("`jid` < %s")
        params.append(high)
    return where, params


def _globs(value):
    """
    Shell globs from a glob, a comma-separated list of them, or a list (as
    ``jobs.list_jobs`` takes them); ``None`` for no filter.
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple, set)):
        return tuple(str(glob) for glob in value)
    return tuple(glob.strip() for glob in str(value).split(",") if glob.strip())


def _matches(value, globs):
    """
    True when ``value`` (a string, or a list of them as in a list target or a
    multi-function job) matches one of ``globs``; ``globs=None`` matches anything.
    """
    if globs is None:
        return True
    values = value if isinstance(value, (list, tuple)) else [value]
    return any(
        isinstance(item, str) and fnmatch.fnmatchcase(item, glob)
        for item in values
        for glob in globs
    )


def _job_matches(load, funs, targets, users, ignore_funs):
    """
    Whether a job's load passes the ``jobs`` filters.  Jobs of functions whose
    returns are never stored (``saltutil.find_job``, ``ignore_funs``) are hidden.
    """
    fun = load.get("fun")
    if isinstance(fun, str) and _is_ignored(fun, ignore_funs):
        return False
    return (
        _matches(fun, funs)
        and _matches(load.get("tgt"), targets)
        and _matches(load.get("user"), users)
    )


def _job_summary(jid, load, returned, failed):
    """
    One job as ``salt-run jobs.list_jobs`` shows it (Salt's own format), plus
    how many minions returned and how many of those failed.
    """
    summary = salt.utils.jid.format_jid_instance_ext(jid, load)
    summary.update({"Returned": returned, "Failed": failed})
    return summary


def _positive_int(value, name):
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ValueError(f"{name} must be a whole number above 0, not {value!r}")
    return number



#: How far past the cutoff prune walks salt_returns' jid index looking for
#: returns stored before the cutoff (a minion clock ahead of the database's).
PRUNE_JID_SLACK = datetime.timedelta(days=1)


def _prune_cutoff(days=None, hours=None, before=None, now=None):
    """
    The moment before which :py:func:`prune` deletes, in whole seconds (the
    resolution of ``alter_time``).  An age (``days``, ``hours``, or both) or
    ``before`` is required: there is no default that deletes everything.
    """
    if before is not None and (days is not None or hours is not None):
        raise ValueError("give an age (days=, hours=) or before=, not both")
    if before is not None:
        try:
            cutoff = _parse_time(before, now)
        except ValueError as exc:
            raise ValueError(f"before: {exc}") from None
    elif days is None and hours is None:
        raise ValueError(
            "say how old what is deleted must be: days=, hours= or before=;"
            " prune has no default age"
        )
    else:
        try:
            age = datetime.timedelta(days=float(days or 0), hours=float(hours or 0))
        except (TypeError, ValueError):
            raise ValueError(f"days={days!r}, hours={hours!r}: give numbers") from None
        if age <= datetime.timedelta(0):
            raise ValueError(f"the age must be above 0 (days={days!r}, hours={hours!r})")
        cutoff = now - age
    if cutoff > now:
        raise ValueError(f"the cutoff {cutoff.isoformat()} is in the future")
    return cutoff.replace(microsecond=0)


# ---------------------------------------------------------------------------
# The schema: what a database holds, against what eventstore makes.  Pure.
# ---------------------------------------------------------------------------

TABLES = ("jids", "salt_returns")
#: The unique key each table needs: one job load per jid, one return per (jid, minion).
UNIQUE_KEYS = {"jids": ("jid",), "salt_returns": ("jid", "id")}
#: MySQL: 4-byte UTF-8, and minion ids compared as they are spelt (web1 is not Web1).
COLLATION = "utf8mb4_bin"

#: What a database holds: ``tables`` {name: collation or None},
#: ``unique_keys`` {table: set of column tuples}, ``text_columns`` {table:
#: [TextColumn]} (MySQL only: SQLite text is always UTF-8, compared as bytes).
Schema = namedtuple("Schema", "tables unique_keys text_columns")
TextColumn = namedtuple("TextColumn", "name data_type column_type collation nullable")
StoredReturn = namedtuple("StoredReturn", "fun jid ret id success full_ret alter_time")


def _missing_tables(schema):
    return [table for table in TABLES if table not in schema.tables]


def _collations(schema, table):
    """
    The collations of ``table`` and its text columns (none on SQLite).
    """
    found = {schema.tables[table]}
    found.update(column.collation for column in schema.text_columns.get(table, ()))
    found.discard(None)
    return found


def _schema_differences(schema):
    """
    How the tables present differ from the layout ``init`` makes, one
    sentence each; an empty list when they match.  A database made from the
    mysql returner's documented schema is utf8 (3-byte) with no unique key on
    ``(jid, id)``.
    """
    found = []
    for table in TABLES:
        if table not in schema.tables:
            continue
        key = UNIQUE_KEYS[table]
        if key not in schema.unique_keys.get(table, set()):
            found.append(
                f"{table} has no unique key on ({', '.join(key)}): "
                + (
                    "a return stored twice is two rows"
                    if table == "salt_returns"
                    else "a job load stored twice is two rows"
                )
            )
        collations = _collations(schema, table)
        if collations - {COLLATION}:
            found.append(
                f"{table} is {', '.join(sorted(collations))}, not {COLLATION}:"
                " 4-byte characters (emoji) cannot be stored"
                if any(not c.startswith("utf8mb4") for c in collations)
                else f"{table} is {', '.join(sorted(collations))}, not {COLLATION}:"
                " minion ids differing only in case are mixed up"
            )
    return found


def _convert_statement(table, text_columns):
    """
    The ALTER that converts ``table`` to utf8mb4_bin.  CONVERT TO alone would
    widen each mediumtext to longtext to keep its length in characters; the
    MODIFY clauses keep the returner's column types (the data fits: utf8 text
    takes the same bytes in utf8mb4).
    """
    clauses = [f"ALTER TABLE `{table}` CONVERT TO CHARACTER SET utf8mb4 COLLATE {COLLATION}"]
    for column in text_columns:
        if column.data_type.endswith("text"):
            clauses.append(
                f"MODIFY `{column.name}` {column.column_type} CHARACTER SET utf8mb4"
                f" COLLATE {COLLATION} {'NULL' if column.nullable else 'NOT NULL'}"
            )
    return ", ".join(clauses)


def _first_return(rows):
    """
    Of several stored copies of one (jid, minion) return
    (:py:class:`StoredReturn` rows), the one a migration keeps: the first
    stored (oldest ``alter_time``; a missing time counts as newest), then the
    lowest ``full_ret``, then the lowest of the other columns, so the choice
    never depends on the order in which the server reads the rows.
    """
    return min(
        rows,
        key=lambda row: (
            row.alter_time is None,
            row.alter_time or datetime.datetime.min,
            row.full_ret,
            row.ret,
            row.fun,
            row.success,
        ),
    )


def _migration_plan(schema):
    """
    The statements ``migrate`` runs, in order: first the conversions to
    utf8mb4_bin (so that duplicates are then found as minion ids are spelt:
    ``Web1`` and ``web1`` are two minions, which the returner's
    utf8_general_ci would call one), then the unique key on ``salt_returns
    (jid, id)``, before which ``migrate`` removes the duplicate returns.
    """
    plan = [
        _convert_statement(table, schema.text_columns.get(table, ()))
        for table in TABLES
        if _collations(schema, table) - {COLLATION}
    ]
    if UNIQUE_KEYS["salt_returns"] not in schema.unique_keys.get("salt_returns", set()):
        plan.append(_ADD_UNIQUE_KEY)
    return plan


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
)

# One row per (jid, minion): the first copy of a return wins, later ones are
# no-ops.  Not INSERT IGNORE, which would also turn a too-long value into a
# silently truncated one.
_INSERT_RETURN = (
    "INSERT INTO `salt_returns` (`fun`, `jid`, `return`, `id`, `success`, `full_ret`)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE `jid` = `jid`"
)
_INSERT_LOAD = (
    "INSERT INTO `jids` (`jid`, `load`) VALUES (%s, %s) ON DUPLICATE KEY UPDATE `jid` = `jid`"
)
_SELECT_JID = "SELECT `id`, `full_ret` FROM `salt_returns` {where} ORDER BY `id`"
_SELECT_LOAD = "SELECT `load` FROM `jids` WHERE `jid` = %s"
_SELECT_RETURNED = "SELECT DISTINCT `id` FROM `salt_returns` WHERE `jid` = %s"
_SELECT_LATEST = (
    "SELECT `jid`, `id`, `fun`, `success`, `alter_time`, `full_ret` FROM `salt_returns`"
    " {where} ORDER BY `jid` DESC, `id` LIMIT %s"
)


# Jobs newest first, from the jid index; {where} narrows by time window and cursor.
_SELECT_JOBS = "SELECT `jid`, `load` FROM `jids` {where} ORDER BY `jid` DESC LIMIT %s"
# A failed return is success '0', as the mysql returner writes it (Alcali counts them so).
_JOB_HAS_FAILED_RETURN = (
    "EXISTS (SELECT 1 FROM `salt_returns` WHERE `salt_returns`.`jid` = `jids`.`jid`"
    " AND `salt_returns`.`success` = '0')"
)
# Returned and failed minions of a page of jobs, in one grouped query.
_COUNT_RETURNS = (
    "SELECT `jid`, COUNT(DISTINCT `id`), COUNT(DISTINCT CASE WHEN `success` = '0' THEN `id` END)"
    " FROM `salt_returns` WHERE `jid` IN ({marks}) GROUP BY `jid`"
)


# Pruning walks a table's jid index in batches: the boundary is the jid
# `batch` rows further on, and one transaction archives and deletes the rows
# up to it (low < jid <= boundary, below the scan's end), so a DELETE only
# ever locks a short range of old jids, never the table.
_PRUNE_BOUNDARY = (
    "SELECT `jid` FROM `{table}` WHERE `jid` > %s AND `jid` < %s ORDER BY `jid` LIMIT 1 OFFSET %s"
)
_PRUNE_BATCH = "`jid` > %s AND `jid` <= %s AND `jid` < %s{extra}"
_PRUNE_ARCHIVE = (
    "INSERT IGNORE INTO `{table}_archive` SELECT * FROM `{table}` WHERE " + _PRUNE_BATCH
)
_PRUNE_DELETE = "DELETE FROM `{table}` WHERE " + _PRUNE_BATCH
_PRUNE_COUNT = "SELECT COUNT(*) FROM `{table}` WHERE `jid` < %s{extra}"
_CREATE_LIKE = "CREATE TABLE IF NOT EXISTS `{target}` LIKE `{source}`"


# MySQL's catalog, for status, init and migrate (SQLite's is read with PRAGMAs).
_MYSQL_TABLES_INFO = (
    "SELECT `TABLE_NAME`, `TABLE_COLLATION` FROM `information_schema`.`TABLES`"
    " WHERE `TABLE_SCHEMA` = DATABASE() AND `TABLE_NAME` IN (%s, %s)"
)
_MYSQL_UNIQUE_KEYS = (
    "SELECT `TABLE_NAME`, `INDEX_NAME`, `COLUMN_NAME` FROM `information_schema`.`STATISTICS`"
    " WHERE `TABLE_SCHEMA` = DATABASE() AND `TABLE_NAME` IN (%s, %s) AND `NON_UNIQUE` = 0"
    " ORDER BY `TABLE_NAME`, `INDEX_NAME`, `SEQ_IN_INDEX`"
)
_MYSQL_TEXT_COLUMNS = (
    "SELECT `TABLE_NAME`, `COLUMN_NAME`, `DATA_TYPE`, `COLUMN_TYPE`, `COLLATION_NAME`,"
    " `IS_NULLABLE` FROM `information_schema`.`COLUMNS` WHERE `TABLE_SCHEMA` = DATABASE()"
    " AND `TABLE_NAME` IN (%s, %s) AND `COLLATION_NAME` IS NOT NULL"
    " ORDER BY `TABLE_NAME`, `ORDINAL_POSITION`"
)


# When the last return was stored, read along the jid index, not by a table scan.
_SELECT_LAST_STORED = (
    "SELECT MAX(`alter_time`) FROM"
    " (SELECT `alter_time` FROM `salt_returns` ORDER BY `jid` DESC LIMIT 100) AS `newest`"
)


# Migrating a database made from the mysql returner's documented schema (MySQL only).
_ADD_UNIQUE_KEY = "ALTER TABLE `salt_returns` ADD UNIQUE KEY `jid_id` (`jid`, `id`)"
# Duplicates are the same (jid, id) byte for byte, whatever the collation of the day.
_DUPLICATE_GROUPS = (
    "FROM `salt_returns` GROUP BY CAST(`jid` AS BINARY), CAST(`id` AS BINARY) HAVING COUNT(*) > 1"
)
_COUNT_DUPLICATES = (
    "SELECT COUNT(*), COALESCE(SUM(`copies`), 0) FROM"
    " (SELECT COUNT(*) AS `copies` " + _DUPLICATE_GROUPS + ") AS `duplicated`"
)
# The (jid, id) pairs stored more than once, numbered, in a temporary table
# of this connection: then the copies go a batch of pairs per transaction.
_DROP_DUPLICATES_TABLE = "DROP TEMPORARY TABLE IF EXISTS `eventstore_duplicates`"
_CREATE_DUPLICATES_TABLE = (
    "CREATE TEMPORARY TABLE `eventstore_duplicates` ("
    "`n` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " `jid` varchar(255) NOT NULL, `id` varchar(255) NOT NULL"
    ") DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
)
_FIND_DUPLICATES = (
    "INSERT INTO `eventstore_duplicates` (`jid`, `id`) SELECT MIN(`jid`), MIN(`id`) "
    + _DUPLICATE_GROUPS
)
_DUPLICATES_JOIN = (
    " FROM `eventstore_duplicates` AS `d` JOIN `salt_returns` AS `r`"
    " ON `r`.`jid` = `d`.`jid` AND `r`.`id` = `d`.`id` WHERE `d`.`n` > %s AND `d`.`n` <= %s"
)
_SELECT_DUPLICATES = (
    "SELECT `r`.`fun`, `r`.`jid`, `r`.`return`, `r`.`id`, `r`.`success`, `r`.`full_ret`,"
    " `r`.`alter_time`" + _DUPLICATES_JOIN + " FOR UPDATE"
)
_DELETE_DUPLICATES = "DELETE `r`" + _DUPLICATES_JOIN
_REINSERT_RETURN = (
    "INSERT INTO `salt_returns` (`fun`, `jid`, `return`, `id`, `success`, `full_ret`,"
    " `alter_time`) VALUES (%s, %s, %s, %s, %s, %s, %s)"
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

    def create_table_like(self, source, target):
        """
        Create ``target`` with the columns and keys of ``source``, unless it exists.
        """

        def work(cur):
            cur.execute(_CREATE_LIKE.format(source=source, target=target))

        self.run(work)

    def insert_return(self, row):
        """
        Insert a return row; True when it is new, False when (jid, id) was stored already.
        """
        return self._insert(_INSERT_RETURN, row)

    def insert_load(self, row):
        """
        Insert a job load; True when it is new, False when the jid was stored already.
        """
        return self._insert(_INSERT_LOAD, row)

    def _insert(self, statement, row):
        def work(cur):
            cur.execute(self.sql(statement), tuple(row))
            return cur.rowcount == 1

        return self.run(work)

    def select(self, statement, params):
        def work(cur):
            cur.execute(self.sql(statement), params)
            return cur.fetchall()

        return self.run(work)

    def describe(self):
        raise NotImplementedError

    def server_version(self):
        raise NotImplementedError

    def schema(self):
        """
        The :py:class:`Schema` of ``jids`` and ``salt_returns`` as the database has them.
        """
        raise NotImplementedError


class _MySQLStore(_Store):
    dialect = "mysql"
    tables = _MYSQL_TABLES
    if HAS_PYMYSQL:
        # pymysql's own names, not pymysql.err.*: saltext-mysql's returner calls
        # pymysql.install_as_MySQLdb() and imports MySQLdb.err, which rebinds
        # pymysql.err to a second copy whose classes the driver never raises.
        lost_connection = (pymysql.OperationalError, pymysql.InterfaceError)

    def connect(self):
        opts = self.config.mysql
        ssl = {
            name: opts[f"ssl_{name}"] for name in ("ca", "cert", "key") if opts.get(f"ssl_{name}")
        }
        return pymysql.connect(
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
            connect_timeout=5,
            autocommit=False,
        )

    def describe(self):
        opts = self.config.mysql
        return f"mysql://{opts['user']}@{opts['host']}:{opts['port']}/{opts['db']}"

    def server_version(self):
        return self.select("SELECT VERSION()", ())[0][0]

    def schema(self):
        tables = dict(self.select(_MYSQL_TABLES_INFO, TABLES))
        unique = {}
        for table, index, column in self.select(_MYSQL_UNIQUE_KEYS, TABLES):
            unique.setdefault(table, {}).setdefault(index, []).append(column)
        columns = {}
        for table, *column in self.select(_MYSQL_TEXT_COLUMNS, TABLES):
            columns.setdefault(table, []).append(
                TextColumn(*column[:4], nullable=column[4] == "YES")
            )
        return Schema(
            tables,
            {table: {tuple(key) for key in keys.values()} for table, keys in unique.items()},
            columns,
        )


class _SQLiteStore(_Store):
    dialect = "sqlite"
    tables = _SQLITE_TABLES
    lost_connection = ()

    def sql(self, statement):
        return (
            statement.replace("%s", "?")
            .replace("ON DUPLICATE KEY UPDATE `jid` = `jid`", "ON CONFLICT DO NOTHING")
            .replace("INSERT IGNORE INTO", "INSERT OR IGNORE INTO")
        )

    def create_table_like(self, source, target):
        # SQLite has no CREATE TABLE ... LIKE: rename the source's own DDL.
        def work(cur):
            cur.execute("SELECT `sql` FROM `sqlite_master` WHERE `name` = ?", (source,))
            (ddl,) = cur.fetchone()
            head = re.match(r"CREATE TABLE\s+(\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|\S+)", ddl)
            cur.execute(f"CREATE TABLE IF NOT EXISTS `{target}`" + ddl[head.end():])

        self.run(work)

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

    def describe(self):
        return f"sqlite://{self.config.sqlite_path}"

    def server_version(self):
        return "SQLite " + self.select("SELECT sqlite_version()", ())[0][0]

    def schema(self):
        def work(cur):
            cur.execute("SELECT `name` FROM `sqlite_master` WHERE `type` = 'table'")
            tables = {name: None for (name,) in cur.fetchall() if name in TABLES}
            unique = {}
            for table in tables:
                cur.execute(f"PRAGMA index_list(`{table}`)")
                for _, index, is_unique, *_ in cur.fetchall():
                    if is_unique:
                        cur.execute(f"PRAGMA index_info(`{index}`)")
                        key = tuple(name for _, _, name in sorted(cur.fetchall()))
                        unique.setdefault(table, set()).add(key)
            return Schema(tables, unique, {})

        return self.run(work)


_STORES = {"mysql": _MySQLStore, "sqlite": _SQLiteStore}

# Built on first use and kept for the life of the loaded module, so a stored
# return costs neither config parsing nor a new connection.
_STATE = {"store": None}
_STATE_LOCK = threading.Lock()


def _store():
    store = _STATE["store"]
    if store is None:
        with _STATE_LOCK:
            store = _STATE["store"]
            if store is None:
                config = _resolve_config(__opts__)
                store = _STATE["store"] = _STORES[config.backend](config)
    return store


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
    # No __context__["retcode"] here: the reactor shares one context between
    # all its runner calls, so one failure would mark every later job failed.
    parsed = _parse_tag(tag)
    if parsed is None:
        return "ignored"
    kind, jid, minion = parsed
    store_ = _store()
    try:
        if kind == "new":
            row, insert = _load_row(jid, data), store_.insert_load
        else:
            row = _return_row(jid, minion, data, store_.config.ignore_funs)
            insert = store_.insert_return
    except Refused as exc:
        log.warning("eventstore: not storing %s: %s", tag[:300], exc)
        return "refused"
    if row is None:
        return "ignored"
    try:
        return "stored" if insert(row) else "duplicate"
    except Exception as exc:  # pylint: disable=broad-except
        # A driver's error text holds no credentials; the event data is not logged.
        log.error("eventstore: could not store %s in %s: %s", tag, store_.describe(), exc)
        return "failed"


def _failed(message):
    """
    What a runner function returns when it fails: ``{"Error": message,
    "retcode": 1}``.  The ``retcode`` key is what ``salt-run`` exits with
    (Salt 3006+; ``__context__["retcode"]`` alone only marks the job
    unsuccessful, for salt-api, orchestration and the job cache, so both).
    """
    __context__["retcode"] = 1
    return {"Error": message, "retcode": 1}


def _invalid(exc):
    return _failed(f"Invalid input: {exc}")


def init():
    """
    Create the ``jids`` and ``salt_returns`` tables if they are missing, on the
    configured backend.  Safe to run again.  The database user needs the
    CREATE and INDEX privileges for this one step only.

    Tables that exist already are left as they are; when they differ from
    eventstore's layout (a database made from the mysql returner's documented
    schema is utf8 and lets a return be stored twice), it says how, and
    ``eventstore.migrate`` upgrades them.

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.init
    """
    store_ = _store()
    try:
        store_.create_tables()
        differences = _schema_differences(store_.schema())
    except Exception as exc:  # pylint: disable=broad-except
        return _failed(f"Could not create the tables in {store_.describe()}: {exc}")
    if differences:
        return "\n".join(
            [
                f"Tables jids and salt_returns exist in {store_.describe()}"
                " but differ from eventstore's layout:",
                *(f"- {difference}" for difference in differences),
                "salt-run eventstore.migrate test=True shows how to upgrade them.",
            ]
        )
    return f"Tables jids and salt_returns are ready in {store_.describe()}"


#: The keys of eventstore.status's report.  The store path's spool and
#: dead-letter sizes are to be added here (and filled in status()) with the
#: outage/spooling work.
STATUS_KEYS = (
    "healthy",
    "retcode",
    "backend",
    "database",
    "server_version",
    "schema",
    "rows",
    "last_return",
    "problems",
)


def status():
    """
    Whether the store is healthy, for admins and for monitoring: the backend
    and its server's version, whether the tables match eventstore's layout
    (``schema``: ``ok`` or what differs), how many rows each table holds,
    and when the last return was stored (``last_return``, UTC: the newest
    ``alter_time`` among the newest jobs' returns, read along the jid index).

    Unhealthy (``healthy: False``, the reasons under ``problems``, and
    ``retcode: 1``, which ``salt-run`` exits with): the database cannot be
    reached, or a table is missing.  A layout that differs is reported, not unhealthy:
    returns are still stored (``eventstore.migrate`` upgrades it).

    The row counts are exact: on tables of many millions of rows they take
    a few seconds.

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.status
        salt-run eventstore.status --out=json
    """
    store_ = _store()
    report = dict.fromkeys(STATUS_KEYS)
    problems = report["problems"] = []
    report.update(backend=store_.dialect, database=store_.describe())
    try:
        report["server_version"] = store_.server_version()
    except Exception as exc:  # pylint: disable=broad-except
        problems.append(f"cannot connect: {exc}")
    else:
        try:
            schema = store_.schema()
            problems.extend(
                f"table {table} is missing: salt-run eventstore.init makes it"
                for table in _missing_tables(schema)
            )
            differences = _schema_differences(schema)
            report["schema"] = (
                [*differences, "salt-run eventstore.migrate test=True shows the upgrade"]
                if differences
                else "ok"
            )
            report["rows"] = {
                table: store_.select(f"SELECT COUNT(*) FROM `{table}`", ())[0][0]
                for table in TABLES
                if table in schema.tables
            }
            if "salt_returns" in schema.tables:
                (last,) = store_.select(_SELECT_LAST_STORED, ())[0]
                report["last_return"] = None if last is None else str(last)
        except Exception as exc:  # pylint: disable=broad-except
            problems.append(f"cannot read the tables: {exc}")
    report["healthy"] = not problems
    report["retcode"] = 0 if report["healthy"] else 1  # what salt-run exits with: see _failed()
    if problems:
        __context__["retcode"] = 1
    return report


def _truthy(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y", "on")
    return bool(value)


def _where(conditions):
    return ("WHERE " + " AND ".join(conditions)) if conditions else ""


def query(
    jid=None,
    minion=None,
    fun=None,
    success=None,
    limit=20,
    since=None,
    until=None,
    failed=False,
    full=False,
    missing=False,
):
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

    failed : False
        ``True`` for failed returns only (the same as ``success=False``).

    since
        Returns of jobs started at or after this time: ``2026-11-26``,
        ``'2026-11-26 12:00'``, ISO 8601, a jid, or an age (``30m``, ``2h``,
        ``3d``, ``1w``: that long ago).  Times without an offset are UTC.

    until
        Returns of jobs started before this time; the same forms as ``since``.

    full : False
        ``True`` for the whole stored return data (the minion's return load:
        ``fun_args``, ``retcode``, ``success``, ``return``...) instead of
        only its ``return``; in the list, under ``full_ret`` instead of
        ``return``.

    missing : False
        With ``jid``: also the minions the job targeted (the ``minions`` of
        its stored load) that did not return, as ``"Minion did not return"``,
        like ``jobs.lookup_jid missing=True``.

    limit : 20
        How many returns to list at most (without ``jid``).

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.query jid=20260101120000000000
        salt-run eventstore.query jid=20260101120000000000 missing=True
        salt-run eventstore.query jid=20260101120000000000 full=True --out=json
        salt-run eventstore.query minion='web*' fun=state.apply success=False limit=5
        salt-run eventstore.query failed=True since=2h
    """
    full, missing = _truthy(full), _truthy(missing)
    try:
        if _truthy(failed):
            if success is not None and _truthy(success):
                raise ValueError("failed=True and success=True exclude each other")
            success = False
        if missing and jid is None:
            raise ValueError("missing=True needs a jid: the minions a job targeted")
        low, high = _jid_range(since, until, now=_now())
        limit = _positive_int(limit, "limit")
    except ValueError as exc:
        return _invalid(exc)
    store_ = _store()
    where, params = _jid_range_where(low, high)
    if jid is not None:
        where.append("`jid` = %s")
        params.append(str(jid))
    for column, glob in (("id", minion), ("fun", fun)):
        if glob is not None:
            where.append(f"`{column}` LIKE %s ESCAPE '!'")
            params.append(_glob_to_like(str(glob)))
    if success is not None:
        where.append("`success` = %s")
        params.append("1" if _truthy(success) else "0")

    if jid is not None:
        returns, outputter = {}, None
        for minion_id, full_ret in store_.select(
            _SELECT_JID.format(where=_where(where)), tuple(params)
        ):
            data = json.loads(full_ret)
            returns[minion_id] = data if full else data.get("return")
            outputter = outputter or data.get("out")
        if missing:
            returns.update(_missing_minions(store_, str(jid)))
        if outputter and not full:
            return {"outputter": outputter, "data": returns}
        return returns

    rows = []
    for row_jid, minion_id, row_fun, row_success, alter_time, full_ret in store_.select(
        _SELECT_LATEST.format(where=_where(where)), (*params, limit)
    ):
        data = json.loads(full_ret)
        rows.append(
            {
                "jid": row_jid,
                "minion": minion_id,
                "fun": data.get("fun", row_fun),
                "success": row_success == "1",
                "time": str(alter_time),
                **({"full_ret": data} if full else {"return": data.get("return")}),
            }
        )
    return rows


def _missing_minions(store_, jid):
    """
    ``{minion: "Minion did not return"}`` for the minions in the job's stored
    load that have no stored return; empty when the load is not stored.
    """
    loads = store_.select(_SELECT_LOAD, (jid,))
    targeted = (json.loads(loads[0][0]).get("minions") or []) if loads else []
    returned = {minion_id for (minion_id,) in store_.select(_SELECT_RETURNED, (jid,))}
    return {
        minion_id: "Minion did not return" for minion_id in targeted if minion_id not in returned
    }


def jobs(
    fun=None, target=None, user=None, since=None, until=None, failed=False, limit=20, before=None
):
    """
    List stored jobs, newest first, as ``salt-run jobs.list_jobs`` shows them
    (JID, Function, Arguments, Target, Target-type, User, StartTime), with how
    many minions returned (``Returned``) and how many of those failed
    (``Failed``).  A job is listed once its load is stored (the
    ``salt/job/<jid>/new`` event); jobs of ``saltutil.find_job`` and of
    ``eventstore:ignore_funs`` are not listed, as their returns are not stored.

    Returns ``{"jobs": [...], "next": <jid or None>}``: when more jobs match
    than ``limit``, ``next`` is the cursor for the next page: pass it as
    ``before``.

    fun
        A function name or shell glob (``state.*``); several as a list or
        comma-separated (``'test.*,pkg.install'``).

    target
        A target or shell glob (``web*``), matched against the job's target as
        given (a list target matches when one of its minions does); several as
        a list or comma-separated.

    user
        The user who published the job, or a shell glob (``sudo_*``).

    since
        Jobs started at or after this time: ``2026-11-26``, ``'2026-11-26
        12:00'``, ISO 8601 (``2026-11-26T12:00:00+01:00``), a jid, or an age
        (``30m``, ``2h``, ``3d``, ``1w``: that long ago).  Times without an
        offset are UTC, as jids are.

    until
        Jobs started before this time; the same forms as ``since``.

    failed : False
        ``True`` for jobs with at least one failed return only.

    limit : 20
        How many jobs a page holds.

    before
        The page cursor: jobs strictly older than this jid (``next`` of the
        page before).

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.jobs
        salt-run eventstore.jobs fun='state.*' since=3d failed=True
        salt-run eventstore.jobs target='web*' user=alice since=2026-11-26 until='2026-11-27 12:00'
        salt-run eventstore.jobs before=20261126120000000000
    """
    try:
        low, high = _jid_range(since, until, before, _now())
        limit = _positive_int(limit, "limit")
    except ValueError as exc:
        return _invalid(exc)
    store_ = _store()
    funs, targets, users = _globs(fun), _globs(target), _globs(user)
    only_failed = _truthy(failed)

    # fun, target and user live in the JSON load, so they are matched here;
    # the time window bounds the scan, which goes down the jid index in chunks
    # until one job more than a page has matched (that one says: more to come).
    page, chunk = [], max(limit + 1, 200)
    while len(page) <= limit:
        conditions, params = _jid_range_where(low, high)
        if only_failed:
            conditions.append(_JOB_HAS_FAILED_RETURN)
        rows = store_.select(_SELECT_JOBS.format(where=_where(conditions)), (*params, chunk))
        for jid, load_text in rows:
            load = json.loads(load_text)
            if _job_matches(load, funs, targets, users, store_.config.ignore_funs):
                page.append((jid, load))
                if len(page) > limit:
                    break
        if len(rows) < chunk:
            break
        high = rows[-1][0]

    more, page = len(page) > limit, page[:limit]
    counts = {}
    if page:
        marks = ", ".join(["%s"] * len(page))
        for jid, returned, failures in store_.select(
            _COUNT_RETURNS.format(marks=marks), tuple(jid for jid, _ in page)
        ):
            counts[jid] = (int(returned), int(failures))
    return {
        "jobs": [_job_summary(jid, load, *counts.get(jid, (0, 0))) for jid, load in page],
        "next": page[-1][0] if more else None,
    }


def _prune_table(store_, table, scan_end, extra, extra_params, batch_size, archive):
    """
    Delete the rows of ``table`` with ``jid < scan_end`` that meet ``extra``,
    first copying them to ``<table>_archive`` when ``archive``; one transaction
    per batch of ``batch_size`` rows along the jid index.  Returns how many
    rows it deleted.
    """
    archive_sql = _PRUNE_ARCHIVE.format(table=table, extra=extra)
    delete_sql = _PRUNE_DELETE.format(table=table, extra=extra)
    boundary_sql = _PRUNE_BOUNDARY.format(table=table)
    low, deleted = "", 0
    while True:
        boundary = store_.select(boundary_sql, (low, scan_end, batch_size - 1))
        high = boundary[0][0] if boundary else scan_end
        params = (low, high, scan_end, *extra_params)

        def work(cur, params=params):
            if archive:
                cur.execute(store_.sql(archive_sql), params)
            cur.execute(store_.sql(delete_sql), params)
            return cur.rowcount

        deleted += store_.run(work)
        if not boundary:
            return deleted
        low = high


def prune(days=None, hours=None, before=None, archive=False, dry_run=False, batch_size=1000):
    """
    Delete stored job loads and returns older than a cutoff, to keep the
    tables from growing forever.  An age is required; nothing younger than
    the cutoff is ever deleted:

    - a job load (``jids``) goes when its job started before the cutoff (the
      time in its jid);
    - a return (``salt_returns``) goes when it was stored before the cutoff
      (its ``alter_time``, the database's clock, UTC), whatever its job's age.
      To stay fast, prune looks for such returns along the jid index up to
      jobs started a day after the cutoff; a return stored earlier than its
      jid says by more than that (a minion clock far ahead) goes in a later run.

    Rows go in batches, one transaction each, along the jid index, so a big
    table is never locked as a whole and the reactor keeps storing meanwhile
    (Salt's own purge runs one DELETE over the table, saltstack/salt#55279).
    The database user needs DELETE on both tables (and, with ``archive``,
    CREATE and INSERT on the ``*_archive`` tables).

    days
        Delete what is older than this many days (a number, ``1.5`` too).

    hours
        Delete what is older than this many hours; adds to ``days``.

    before
        Instead of an age: delete what is older than this time
        (``2026-11-01``, ``'2026-11-01 12:00'``, ISO 8601, a jid).

    archive : False
        Move the rows to ``jids_archive`` and ``salt_returns_archive``
        (created like the originals, as the mysql returner's ``archive_jobs``
        does) instead of only deleting them.

    dry_run : False
        Only count what would go.

    batch_size : 1000
        Rows per transaction.

    Run it daily from the master's scheduler (then restart the master):

    .. code-block:: yaml

        schedule:
          eventstore_prune:
            function: eventstore.prune
            kwargs:
              days: 30
            hours: 24
            splay: 600

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.prune days=30 dry_run=True
        salt-run eventstore.prune days=30
        salt-run eventstore.prune hours=12 archive=True
        salt-run eventstore.prune before=2026-01-01
    """
    try:
        cutoff = _prune_cutoff(days, hours, before, _now())
        batch_size = _positive_int(batch_size, "batch_size")
    except ValueError as exc:
        return _invalid(exc)
    archive, dry_run = _truthy(archive), _truthy(dry_run)
    store_ = _store()
    stored_before = cutoff.strftime("%Y-%m-%d %H:%M:%S")
    plan = (
        # table, end of the jid scan, what else a row must meet to go
        ("jids", _time_to_jid(cutoff), "", ()),
        (
            "salt_returns",
            _time_to_jid(cutoff + PRUNE_JID_SLACK),
            " AND `alter_time` < %s",
            (stored_before,),
        ),
    )
    result = {
        "cutoff": cutoff.isoformat(),
        "action": {
            (False, False): "deleted",
            (True, False): "archived",
            (False, True): "would delete",
            (True, True): "would archive",
        }[(archive, dry_run)],
    }
    try:
        for table, scan_end, extra, extra_params in plan:
            if dry_run:
                statement = _PRUNE_COUNT.format(table=table, extra=extra)
                ((result[table],),) = store_.select(statement, (scan_end, *extra_params))
                continue
            if archive:
                store_.create_table_like(table, f"{table}_archive")
            result[table] = _prune_table(
                store_, table, scan_end, extra, extra_params, batch_size, archive
            )
    except Exception as exc:  # pylint: disable=broad-except
        return _failed(
            f"Could not prune {store_.describe()}: {exc}"
            " (batches done before the error stay done; run it again)"
        )
    return result


def _remove_duplicate_returns(store_, batch_size):
    """
    Keep one row of each (jid, id) in ``salt_returns`` (:py:func:`_first_return`),
    ``batch_size`` pairs per transaction; returns how many rows it removed.
    MySQL only.
    """

    def find(cur):
        cur.execute(_DROP_DUPLICATES_TABLE)
        cur.execute(_CREATE_DUPLICATES_TABLE)
        cur.execute(_FIND_DUPLICATES)
        cur.execute("SELECT COALESCE(MAX(`n`), 0) FROM `eventstore_duplicates`")
        return cur.fetchone()[0]

    def dedupe(cur, bounds):
        cur.execute(_SELECT_DUPLICATES, bounds)
        copies = {}
        for row in map(StoredReturn._make, cur.fetchall()):
            copies.setdefault((row.jid, row.id), []).append(row)
        cur.execute(_DELETE_DUPLICATES, bounds)
        deleted = cur.rowcount
        cur.executemany(_REINSERT_RETURN, [tuple(_first_return(rows)) for rows in copies.values()])
        return deleted - len(copies)

    last, removed = store_.run(find), 0
    try:
        for low in range(0, last, batch_size):
            removed += store_.run(lambda cur, low=low: dedupe(cur, (low, low + batch_size)))
    finally:
        store_.run(lambda cur: cur.execute(_DROP_DUPLICATES_TABLE))
    return removed


def _add_unique_key(store_, batch_size, attempts=3):
    """
    Remove the duplicate returns, then add the unique key on (jid, id); when
    the reactor stored a duplicate in between, do both again.  Returns how
    many rows it removed.
    """
    removed = 0
    for attempt in range(1, attempts + 1):
        removed += _remove_duplicate_returns(store_, batch_size)
        try:
            store_.run(lambda cur: cur.execute(_ADD_UNIQUE_KEY))
            return removed
        except pymysql.IntegrityError:
            if attempt == attempts:
                raise
    return removed


def migrate(test=False, batch_size=1000):
    """
    Upgrade a MySQL database made from Salt's documented mysql returner
    schema to eventstore's layout, which the same readers read:

    1. convert ``jids`` and ``salt_returns`` to utf8mb4 with the
       ``utf8mb4_bin`` collation (``ALTER TABLE ... CONVERT TO CHARACTER SET``,
       keeping the returner's column types), so 4-byte characters can be
       stored and minion ids differing in case stay apart;
    2. remove duplicate returns (the same jid and minion stored more than
       once, saltstack/salt#22171 and #62834), keeping the first of each: the
       oldest ``alter_time``, then the lowest ``full_ret``;
    3. add the unique key on ``salt_returns (jid, id)``, so each return is
       stored once from then on.

    Each ALTER TABLE copies its table and blocks writes to it meanwhile: on a
    big database, run it when little is stored, after ``eventstore.prune``.
    The returns the reactor cannot store meanwhile are logged as failed.  The
    database user needs ALTER, CREATE TEMPORARY TABLES, INDEX, SELECT, INSERT
    and DELETE for this.  On SQLite there is nothing to migrate.

    test : False
        ``True`` shows what it would do, and how many duplicates it would
        remove, and changes nothing.

    batch_size : 1000
        (jid, id) pairs whose duplicates go per transaction.

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.migrate test=True
        salt-run eventstore.migrate
    """
    store_ = _store()
    if store_.dialect != "mysql":
        return (
            f"Nothing to migrate in {store_.describe()}: eventstore makes its SQLite tables itself"
        )
    test = _truthy(test)
    try:
        batch_size = _positive_int(batch_size, "batch_size")
    except ValueError as exc:
        return _invalid(exc)
    report = {"database": store_.describe(), "steps": []}
    try:
        schema = store_.schema()
        missing = _missing_tables(schema)
        if missing:
            raise ValueError(
                f"table {', '.join(missing)} missing: salt-run eventstore.init makes it"
            )
        if UNIQUE_KEYS["jids"] not in schema.unique_keys.get("jids", set()):
            raise ValueError("jids has no unique key on (jid), unlike the mysql returner's schema")
        plan = _migration_plan(schema)
        if not plan:
            report["result"] = "Nothing to do: the tables have eventstore's layout"
            return report
        for statement in plan:
            if statement == _ADD_UNIQUE_KEY:
                ((pairs, copies),) = store_.select(_COUNT_DUPLICATES, ())
                removed = int(copies) - pairs
                if not test:
                    removed = _add_unique_key(store_, batch_size)
                report["steps"].append(
                    f"remove {removed} duplicate returns of {pairs} (jid, id) pairs, keeping"
                    " the first stored of each (oldest alter_time, then lowest full_ret)"
                )
            elif not test:
                store_.run(lambda cur, statement=statement: cur.execute(statement))
            report["steps"].append(statement)
        if test:
            report["result"] = "Would upgrade (test=True: nothing was changed)"
            return report
        left = _schema_differences(store_.schema())
        if left:
            raise ValueError("the tables still differ: " + "; ".join(left))
        report["result"] = "Upgraded: the tables have eventstore's layout"
    except Exception as exc:  # pylint: disable=broad-except
        # The retcode key is what salt-run exits with: see _failed().
        __context__["retcode"] = report["retcode"] = 1
        report["result"] = f"Failed: {exc}"
    return report
