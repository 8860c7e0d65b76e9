"""
Store every job return the master sees into MySQL/MariaDB, PostgreSQL or SQLite, from the master.

Minions keep no database credentials: the master's reactor hands each
``salt/job/<jid>/ret/<minion>`` event (a minion's return) to :py:func:`store`,
which writes it into the tables of Salt's mysql returner (on PostgreSQL, of its
pgjsonb returner: the same tables, ``jsonb`` columns): ``salt_returns``, and
``jids`` with the job's load from the master job cache, once per job.  The
reactor SLS itself drops ``saltutil.find_job`` polls and ``ignore_funs``, so
they cost no runner job.  Every reader of that layout (the returner's
``get_jid``/``get_fun``, Alcali, SQL reports) reads these rows as its own.

:depends: PyMySQL for the mysql backend; psycopg 3 (``psycopg[binary]``) for
    the postgres backend; nothing for SQLite.

Installation
------------

As a Salt extension: ``salt-pip install 'saltext-eventstore[mysql]'`` (``pip``
on a pip-installed master), then ``salt-run eventstore.install_reactor`` puts
the reactor SLS that ships in the package at ``/srv/reactor/eventstore.sls``;
nothing to sync.  Or synced from ``file_roots``: copy this file to
``_runners/eventstore.py`` under a ``file_roots`` directory, the reactor SLS to
``/srv/reactor/eventstore.sls``, then:

.. code-block:: bash

    salt-run saltutil.sync_runners
    salt-run eventstore.init

and add to the master config (then restart the master):

.. code-block:: yaml

    reactor:
      - 'salt/job/*/ret/*':
        - /srv/reactor/eventstore.sls

(A ``salt/job/*/new`` line works too, and is needed only when
``verify_returns`` is off: then no job cache gives the job's load.)

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

The pgjsonb returner's keys select PostgreSQL; its defaults:

.. code-block:: yaml

    returner.pgjsonb.host: 'localhost'
    returner.pgjsonb.user: 'salt'
    returner.pgjsonb.pass: 'salt'
    returner.pgjsonb.db: 'salt'
    returner.pgjsonb.port: 5432
    returner.pgjsonb.sslmode: None        # verify-full: TLS, the server's certificate and name checked
    returner.pgjsonb.sslrootcert: None
    returner.pgjsonb.sslcert: None
    returner.pgjsonb.sslkey: None
    returner.pgjsonb.sslcrl: None
    returner.pgjsonb.connect_timeout: None  # seconds; eventstore waits 3 when unset

With both kinds of keys set, ``eventstore: backend`` must say which.  With
none of these keys, returns go to SQLite in ``<cachedir>/eventstore.sqlite3``
(mode 0600).

Everything else sits under one ``eventstore`` key; all of it is optional:

.. code-block:: yaml

    eventstore:
      backend: mysql          # or postgres, sqlite; default: mysql when a mysql.* key is
                              # set, postgres when a returner.pgjsonb.* key is
      postgres_hosts:         # several PostgreSQL servers: libpq keeps the one that takes writes
        - db1.example.com
        - db2.example.com:5433
      sqlite_path: /var/cache/salt/master/eventstore.sqlite3
      ignore_funs:            # shell globs of functions whose returns are not stored
        - saltutil.find_job   # always ignored, listed here or not
        - test.ping
      verify_returns: True    # default: True when master_job_cache is local_cache (and no ext_job_cache)
      job_cache_wait: 5       # seconds to wait for the master to write a targeted minion's return to its job cache
      spool_dir: /var/cache/salt/master/eventstore_spool
      catch_up: True          # store by itself what the job cache holds and the database lacks
      catch_up_interval: 60   # seconds between catch-up rounds
      catch_up_after: 60      # seconds a return is left to the reactor/engine before a round stores it
      catch_up_max_jobs: 500  # jobs a round looks at, at most
      mysql_hosts:            # several nodes of one database (a Galera cluster): tried in order
        - db1.example.com     # mysql.port unless given
        - db2.example.com:3307

With ``mysql_hosts``, ``mysql.host`` and ``mysql.port`` are not used; the
``mysql.*`` user, password, database and TLS keys apply to every host.  The
host that answers is used until it fails (down, or up but taking no writes:
a Galera node outside the primary component or not synced yet, ``read_only``),
then the next one, with one warning; eventstore does not go back to an
earlier host by itself (the host in use is kept in
``<spool_dir>/.host-in-use``, through the reactor's reloads and master
restarts).  A deadlock, a lock wait timeout or a Galera
certification conflict is retried on the same connection, a few times, and
is no outage.

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
  refused and logged with its tag.  A forgery holds a reactor thread 0.2 s at
  most, unless it names a targeted minion that has not returned yet (then
  ``job_cache_wait``, once per job and minion).  Turn verification off only
  for a master whose job cache is not ``local_cache``: then every return
  event on the bus is believed.
- **Whole returns.**  The event bus cuts values of events over
  ``max_event_size`` to ``VALUE_TRIMMED``; the job cache keeps them whole, and
  that copy is stored.
- **Nothing lost while the database is down.**  A row that cannot be written
  is written to ``spool_dir`` (fsynced), one warning is logged per outage, and
  the database is not tried again for a growing pause (1 s to 30 s), so a dead
  server does not hold reactor threads.  The spool is written back by the next
  successful store, 100 rows at a time, and by :py:func:`replay`.
- **Nothing stored wrong.**  A row the database refuses as such (too big for
  its column: ``mediumtext`` holds 16 MiB; on PostgreSQL, a NUL character or
  a lone surrogate, which ``jsonb`` cannot hold) is kept whole in the
  ``eventstore_dead_letters`` table with the reason; :py:func:`query` shows it.
- **Nothing missed for good.**  Returns the reactor never saw (master down,
  reactor queue full, a reaction Salt lost) are copied from the job cache by
  catch-up rounds (:py:func:`catch_up`): every ``catch_up_interval`` seconds,
  in a thread of the reactor's process (started by the first stored return)
  and of the eventstore engine (started with the master), one process at a
  time.  A return reaches the database within ``catch_up_after`` +
  ``catch_up_interval`` seconds (2 minutes by default) of reaching the master.

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
import math
import os
import random
import re
import sys
import threading
import time
import types
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

try:
    import psycopg
    import psycopg.types.datetime
    import psycopg.types.string

    HAS_PSYCOPG = True
except ImportError:
    HAS_PSYCOPG = False

import sqlite3

log = logging.getLogger(__name__)

__virtualname__ = "eventstore"

#: This release of eventstore (runner, engine and reactor SLS).  The one place
#: it is written: pyproject.toml reads the package's version from here, and
#: eventstore.status shows it.
__version__ = "1.0.0"

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

#: The pgjsonb returner's keys (``returner.pgjsonb.<key>``) and its defaults.
POSTGRES_DEFAULTS = {
    "host": "localhost",
    "user": "salt",
    "pass": "salt",
    "db": "salt",
    "port": 5432,
    "sslmode": None,
    "sslrootcert": None,
    "sslcert": None,
    "sslkey": None,
    "sslcrl": None,
    "connect_timeout": None,
}

#: What ``mediumtext`` holds, in bytes.
TEXT_BYTES = 16 * 1024 * 1024 - 1

#: Rows written back from the spool per successful store.
REPLAY_BATCH = 100

#: Seconds to wait for the job cache to hold a return the job's minion
#: list did not expect (a syndic's minion, stale grains) or that was already
#: waited for in vain: a forgery, most likely.  The master writes a genuine
#: one milliseconds after firing it; 10 reactor threads waiting this long
#: each still take forgeries as fast as the reactor renders them (~50/s).
#: backfill stores a genuine one this misses.
UNEXPECTED_WAIT = 0.2

#: How often a transaction that lost to another one (a deadlock, a Galera
#: certification conflict, a lock wait timeout) is run again, and the first
#: pause before that in seconds (doubled each time, with jitter): two masters
#: storing the same return on two Galera nodes conflict once, then find it stored.
CONFLICT_RETRIES = 5
CONFLICT_PAUSE = 0.02

#: Rows backfill writes per transaction.
BACKFILL_BATCH = 500

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
    "Config",
    "backend mysql sqlite_path ignore_funs verify_returns job_cache_wait spool_dir postgres",
)

BACKENDS = ("mysql", "sqlite", "postgres")


def _returner_keys(opts, prefix, defaults, nested=None):
    """
    A returner's connection settings: ``<prefix>.<key>`` flat keys, else
    ``nested[key]``, else ``defaults``; and whether any key was given.  The
    returners' convention: the string ``"None"`` means unset.
    """
    nested = nested if isinstance(nested, dict) else {}
    found, given = dict(defaults), False
    for key in defaults:
        if f"{prefix}.{key}" in opts:
            value, given = opts[f"{prefix}.{key}"], True
        elif key in nested:
            value, given = nested[key], True
        else:
            continue
        found[key] = None if isinstance(value, str) and value.lower() == "none" else value
    return found, given


def _postgres_hosts(hosts, default_port):
    """
    libpq's ``host`` and ``port`` for a list of ``host`` or ``host:port``
    servers (``eventstore: postgres_hosts``): ``("a,b", "5432,5433")``.
    libpq tries them in order and, with ``target_session_attrs=read-write``,
    keeps the first that takes writes (the primary after a failover).
    """
    servers = _parse_hosts(hosts, default_port, key="postgres_hosts")
    return ",".join(name for name, _ in servers), ",".join(str(port) for _, port in servers)


def _ignore_globs(value):
    """
    The globs of ``eventstore:ignore_funs``: a list of them, or one.  Only
    strings: the reactor SLS reads the same setting and must mean the same.
    """
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(glob for glob in value if isinstance(glob, str))


def _resolve_config(opts):
    """
    Turn the master config into a :py:class:`Config`.  Pure: reads ``opts`` only.
    """
    own = opts.get("eventstore") or {}
    mysql, given = _returner_keys(opts, "mysql", MYSQL_DEFAULTS, opts.get("mysql"))
    mysql["port"] = int(mysql["port"])
    if own.get("mysql_hosts"):
        mysql["hosts"], given = _parse_hosts(own["mysql_hosts"], mysql["port"]), True
    else:
        mysql["hosts"] = ((mysql["host"], mysql["port"]),)

    postgres, postgres_given = _returner_keys(opts, "returner.pgjsonb", POSTGRES_DEFAULTS)
    postgres["port"] = int(postgres["port"])
    if postgres["connect_timeout"] is not None:
        postgres["connect_timeout"] = int(postgres["connect_timeout"])
    if own.get("postgres_hosts"):
        postgres["host"], postgres["port"] = _postgres_hosts(
            own["postgres_hosts"], postgres["port"]
        )

    backend = own.get("backend")
    if not backend and given and postgres_given:
        raise ValueError(
            "eventstore: both mysql.* and returner.pgjsonb.* keys are set:"
            " say which to store into with eventstore: backend: mysql or postgres"
        )
    backend = backend or ("mysql" if given else "postgres" if postgres_given else "sqlite")
    if backend not in BACKENDS:
        raise ValueError(
            f"eventstore: backend must be one of {', '.join(BACKENDS)}, not {backend!r}"
        )
    cachedir = opts.get("cachedir", "/var/cache/salt/master")
    ignore = tuple(ALWAYS_IGNORED) + tuple(
        glob for glob in _ignore_globs(own.get("ignore_funs")) if glob not in ALWAYS_IGNORED
    )
    job_cache_readable = _job_cache_is_local(opts)
    verify = own.get("verify_returns")
    return Config(
        backend=backend,
        mysql=mysql,
        sqlite_path=own.get("sqlite_path") or os.path.join(cachedir, "eventstore.sqlite3"),
        ignore_funs=ignore,
        verify_returns=job_cache_readable if verify is None else bool(verify),
        job_cache_wait=float(own.get("job_cache_wait", 5)),
        spool_dir=own.get("spool_dir") or os.path.join(cachedir, "eventstore_spool"),
        postgres=postgres,
    )


def _job_cache_is_local(opts):
    """
    True when the master keeps every return in local_cache's files.
    """
    # Only local_cache can be asked cheaply for one minion's return of one job;
    # with an ext_job_cache the master writes no returns there.
    return bool(
        opts.get("job_cache", True)
        and not opts.get("ext_job_cache")
        and opts.get("master_job_cache", "local_cache") == "local_cache"
    )


def _parse_hosts(entries, default_port, key="mysql_hosts"):
    """
    ``(host, port)`` of each entry of a host list (``host``, ``host:port``,
    ``[v6 address]:port``; a list, or one string of them separated by
    commas), in order.  Pure; raises ``ValueError`` naming ``key`` (the
    config key) and a bad entry.
    """
    if isinstance(entries, str):
        entries = entries.split(",")
    if not isinstance(entries, (list, tuple)):
        raise ValueError(f"eventstore: {key} must be a list of host or host:port, not {entries!r}")
    hosts = []
    for entry in entries:
        text = str(entry).strip()
        match = re.fullmatch(r"\[([^\]]+)\](?::(\w+))?|([^:\s]+)(?::(\w+))?|([0-9A-Fa-f:]+)", text)
        if not match:
            raise ValueError(f"eventstore: {key}: {text!r} is not host or host:port")
        host = match.group(1) or match.group(3) or match.group(5)
        port = match.group(2) or match.group(4) or default_port
        if not str(port).isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"eventstore: {key}: {text!r} has no valid port")
        hosts.append((host, int(port)))
    if not hosts:
        raise ValueError(f"eventstore: {key} is empty")
    return tuple(hosts)


def _host_name(host):
    """
    ``host:port`` as a URL writes it (an IPv6 address in brackets).
    """
    name, port = host
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


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


#: What a return load holds that is not the job's: ``jids`` keeps the job,
#: ``salt_returns`` the return.
_RETURN_ONLY_KEYS = ("return", "retcode", "success", "out")


def _job_load(jid, load):
    """
    The ``jids`` row for a job's load as the master job cache keeps it:
    ``Minions`` (local_cache's name) becomes the events' ``minions``, and a
    job a minion started itself, whose load is its return's, is kept
    without the return.
    """
    load = {key: value for key, value in load.items() if key not in _RETURN_ONLY_KEYS}
    load["jid"] = jid
    if "Minions" in load:
        load["minions"] = sorted(load.pop("Minions"))
    return _load_row(jid, load)


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
    # The event's outputter stays when the cache has none (yet): out.p is
    # written after return.p, and waited for only when the event names one.
    merged = {
        key: value for key, value in data.items() if key not in ("return", "retcode", "success")
    }
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
        self._given_up = set()
        self._loads_given = set()

    def _read(self, *parts):
        """
        One file of the job cache, or ``None`` when there is none.  local_cache
        writes each file whole (write, then rename), so a file that does not
        decode is damaged: refused, with one log line.
        """
        path = os.path.join(
            salt.utils.jid.jid_dir(parts[0], self.job_dir, self.hash_type), *parts[1:]
        )
        try:
            with open(path, "rb") as handle:
                return salt.payload.load(handle)
        except FileNotFoundError:
            return None
        except Exception as exc:  # pylint: disable=broad-except
            raise Refused(f"the master job cache's {parts[-1]} cannot be read: {exc}") from exc

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

    def known(self, jid):
        """
        True once the master has a folder for the job: it makes it before it
        publishes a job, and before it fires the return of a job a minion
        started itself (a scheduled job), whose load it writes only after
        firing that return.  A jid without one was never seen by this master.
        """
        return os.path.isdir(salt.utils.jid.jid_dir(jid, self.job_dir, self.hash_type))

    def expects(self, jid, minion):
        """
        False when the job's minion lists (``.minions.p``, written before the
        job is published, and a syndic's ``.minions.<syndic>.p``) leave
        ``minion`` out, or when a return of ``minion`` for the job was already
        waited for in vain; True otherwise, also for a job without a list (a
        minion's own scheduled job).
        """
        if (jid, minion) in self._given_up:
            return False
        folder = salt.utils.jid.jid_dir(jid, self.job_dir, self.hash_type)
        try:
            lists = [
                name
                for name in os.listdir(folder)
                if name.startswith(".minions") and name.endswith(".p")
            ]
            for name in lists:
                minions = self._read(jid, name)
                if not isinstance(minions, list) or minion in minions:
                    return True
        except Exception:  # pylint: disable=broad-except
            return True  # gone, or being written (it is not written atomically)
        return not lists

    def gave_up(self, jid, minion):
        """
        Remember that a return of ``minion`` for ``jid`` was waited for in vain.
        """
        if len(self._given_up) >= 4096:
            self._given_up.clear()
        self._given_up.add((jid, minion))

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

    def load_once(self, jid):
        """
        The job's load the first time it is found here, then ``None``: a
        job's load is stored with its first return, not with each of them.
        Several reactor threads may still read it at once; storing it twice
        is harmless (the first copy wins).
        """
        if jid in self._loads_given:
            return None
        load = self.load(jid)
        if load is not None:
            if len(self._loads_given) >= 4096:
                self._loads_given.clear()
            self._loads_given.add(jid)
        return load

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
        left = deadline - time.monotonic()
        if found is not None or left <= 0:
            return found
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.25)


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

RETURNER_TABLES = ("jids", "salt_returns")
#: What storing needs: the returner's tables and eventstore's own.
REQUIRED_TABLES = (*RETURNER_TABLES, "eventstore_dead_letters")
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


def _missing_tables(schema, tables=REQUIRED_TABLES):
    return [table for table in tables if table not in schema.tables]


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
    for table in RETURNER_TABLES:
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
        for table in RETURNER_TABLES
        if _collations(schema, table) - {COLLATION}
    ]
    if UNIQUE_KEYS["salt_returns"] not in schema.unique_keys.get("salt_returns", set()):
        plan.append(_ADD_UNIQUE_KEY)
    return plan


# ---------------------------------------------------------------------------
# Storage: the SQL is written once, in MySQL's quoting and placeholders; the
# SQLite store translates its DDL, placeholders and few MySQL-only words.
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


def _sqlite_tables(mysql_tables):
    """
    SQLite's DDL, translated from the MySQL DDL so the layout is written once:
    no table options, ``UNIQUE KEY name (cols)`` as ``UNIQUE (cols)``, and each
    plain ``KEY`` as a ``CREATE INDEX`` (but the ones a unique key starts with).
    """
    statements = []
    for statement in mysql_tables:
        head, body = statement.split(" (\n", 1)
        table = re.search(r"`(\w+)`$", head).group(1)
        parts = [part.strip() for part in body[: body.rindex("\n)")].split(",\n")]
        unique = [re.fullmatch(r"UNIQUE KEY `\w+` \((.+)\)", part) for part in parts]
        unique_starts = {match.group(1).split(",")[0] for match in unique if match}
        columns, indexes = [], []
        for part in parts:
            key = re.fullmatch(r"(UNIQUE )?KEY `(\w+)` \((.+)\)", part)
            if not key:
                columns.append(part)
            elif key.group(1):
                columns.append(f"UNIQUE ({key.group(3)})")
            elif key.group(3) not in unique_starts:
                indexes.append(
                    f"CREATE INDEX IF NOT EXISTS `{table}_{key.group(2)}` ON `{table}` ({key.group(3)})"
                )
        statements.append(head + " (\n  " + ",\n  ".join(columns) + "\n)")
        statements.extend(indexes)
    return tuple(statements)


_SQLITE_TABLES = _sqlite_tables(_MYSQL_TABLES)

#: The pgjsonb returner's name for the GIN index of ``jids.load``; the others
#: are ``idx_<table>_<column>`` there as here.
_PGJSONB_INDEX_NAMES = {("jids", "load"): "idx_jids_jsonb"}


def _postgres_tables(sqlite_tables):
    """
    PostgreSQL's DDL in the pgjsonb returner's layout, translated from
    SQLite's (itself from the MySQL DDL, so the layout is written once):
    the JSON columns (``mediumtext``) are ``jsonb`` with a GIN index each,
    as pgjsonb makes them; ``alter_time`` is ``timestamptz``; keys and ids
    compare byte by byte (``COLLATE "C"``, as ``utf8mb4_bin`` on MySQL), and
    the dead letters' ``longtext`` is ``text``.
    """
    statements = []
    for statement in sqlite_tables:
        statement = (
            statement.replace("`", '"')
            .replace(
                "TIMESTAMP DEFAULT CURRENT_TIMESTAMP", "TIMESTAMP WITH TIME ZONE DEFAULT NOW()"
            )
            .replace("longtext", "text")
        )
        statement = re.sub(r"(varchar\(\d+\))", r'\1 COLLATE "C"', statement)
        # pgjsonb's index names: idx_salt_returns_id, not salt_returns_id.
        statement = re.sub(
            r'INDEX IF NOT EXISTS "(\w+)" ON', r'INDEX IF NOT EXISTS "idx_\1" ON', statement
        )
        statements.append(statement.replace("mediumtext", "jsonb"))
        table = re.match(r'CREATE TABLE IF NOT EXISTS "(\w+)"', statement)
        for column in re.findall(r'"(\w+)" mediumtext', statement):
            index = _PGJSONB_INDEX_NAMES.get(
                (table.group(1), column), f"idx_{table.group(1)}_{column}"
            )
            statements.append(
                f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table.group(1)}" USING gin ("{column}")'
                " WITH (fastupdate = on)"
            )
    return tuple(statements)


_POSTGRES_TABLES = _postgres_tables(_SQLITE_TABLES)


def _insert_sql(table, columns):
    # A plain INSERT: the unique key keeps the first copy of a row and the store
    # takes a second copy's duplicate-key error as "stored already".  Not ON
    # DUPLICATE KEY UPDATE, which needs the UPDATE privilege even for a new
    # row; not INSERT IGNORE, which would also turn a too-long value into a cut one.
    return (
        f"INSERT INTO `{table}` ({', '.join(f'`{c}`' for c in columns)})"
        f" VALUES ({', '.join(['%s'] * len(columns))})"
    )


_INSERT = {table: _insert_sql(table, columns) for table, columns in TABLES.values()}
_SELECT_JID = "SELECT `id`, `fun`, `full_ret` FROM `salt_returns` {where} ORDER BY `id`"
_SELECT_LOAD = "SELECT `load` FROM `jids` WHERE `jid` = %s"
_SELECT_RETURNED = "SELECT DISTINCT `id` FROM `salt_returns` WHERE `jid` = %s"
_SELECT_DEAD_JID = "SELECT `id`, `reason` FROM `eventstore_dead_letters` WHERE `jid` = %s"
_SELECT_LATEST = (
    "SELECT `jid`, `id`, `fun`, `success`, `alter_time`, `full_ret` FROM `salt_returns`"
    " {where} ORDER BY `jid` DESC, `id` LIMIT %s OFFSET %s"
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
    " WHERE `TABLE_SCHEMA` = DATABASE() AND `TABLE_NAME` IN (%s, %s, %s)"
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

    def is_duplicate(self, exc):
        """
        True when ``exc`` says a unique key is taken (or, adding one, that
        rows share it).
        """
        return _is_duplicate(exc)

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
        names = [_host_name(host) for host in hosts]
        return names.index(name) if name in names else 0

    def _remember_host(self, index):
        try:
            os.makedirs(self.config.spool_dir, mode=0o700, exist_ok=True)
            temp = f"{self._host_file()}.{uuid.uuid4().hex[:8]}.tmp"
            with open(temp, "w", encoding="utf-8") as handle:
                handle.write(_host_name(self.hosts()[index]) + "\n")
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
            _host_name(self.hosts()[index]),
            _host_name(self.hosts()[previous]),
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
                    time.sleep(_conflict_pause(conflicts, random.random()))
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
            cur.execute(_CREATE_LIKE.format(source=source, target=target))

        self.run(work)

    def insert(self, rows):
        """
        Insert rows of one type in one transaction; how many were new (a row
        whose key is stored already is left as it is).
        """
        table, _ = TABLES[type(rows[0])]
        limit = self.max_row_bytes()
        for row in rows:
            if not _fits("".join(value for value in row if isinstance(value, str)), limit):
                raise RowTooBig(f"the row is bigger than {self.describe()} takes in one statement")
        params = [tuple(row) for row in rows]
        return self.run(lambda cur: self._insert_new(cur, _INSERT[table], params))

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


def _conflict_pause(attempt, jitter):
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


_DUPLICATE_KEY = 1062  # ER_DUP_ENTRY: the row is stored already


def _pymysql_error(exc, *names):
    """
    True when ``exc`` is one of PyMySQL's errors called ``names``.  By name,
    not by class: Salt's mysql returner runs ``pymysql.install_as_MySQLdb()``
    and imports ``MySQLdb.err``, a second copy of ``pymysql.err``, and in a
    process that loaded both (the master, salt-run, a test run) which copy's
    classes a connection raises cannot be relied on.
    """
    return any(
        cls.__name__ in names and cls.__module__ in ("pymysql.err", "MySQLdb.err")
        for cls in type(exc).__mro__
    )


def _is_duplicate(exc):
    return _pymysql_error(exc, "IntegrityError") and exc.args[:1] == (_DUPLICATE_KEY,)


#: A transaction that lost to another and can run again as it is: a deadlock,
#: which is also how MariaDB reports a Galera certification conflict (1213);
#: a lock wait timeout (1205); MySQL group replication's certification
#: failure, "Plugin instructed the server to rollback" (3101).
_MYSQL_CONFLICT_ERRNOS = {1213, 1205, 3101}

#: A server that is up and takes no writes: a Galera node outside the primary
#: component or not synced ("WSREP has not yet prepared node for application
#: use", 1047), read_only or super_read_only (1290; a group replication secondary).
_MYSQL_NOT_READY_ERRNOS = {1047, 1290}


def _mysql_errno(exc):
    """
    The server's error number of one of PyMySQL's errors, else ``None``.  Pure.
    """
    if _pymysql_error(exc, "MySQLError") and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def _is_mysql_conflict(exc):
    return _mysql_errno(exc) in _MYSQL_CONFLICT_ERRNOS


def _is_mysql_not_ready(exc):
    return _mysql_errno(exc) in _MYSQL_NOT_READY_ERRNOS


# MySQL errors about the row itself: data too long, bad string, packet too big.
_MYSQL_ROW_ERRNOS = {1153, 1366, 1406, 1264, 1265, 1292}


class _MySQLStore(_Store):
    dialect = "mysql"
    tables = _MYSQL_TABLES

    def is_lost_connection(self, exc):
        return _pymysql_error(exc, "OperationalError", "InterfaceError")

    def is_conflict(self, exc):
        return _is_mysql_conflict(exc)

    def is_not_ready(self, exc):
        return _is_mysql_not_ready(exc)

    def hosts(self):
        return self.config.mysql["hosts"]

    def connect_to(self, host):
        opts = self.config.mysql
        ssl = {
            name: opts[f"ssl_{name}"] for name in ("ca", "cert", "key") if opts.get(f"ssl_{name}")
        }
        return _Connection(
            host=host[0],
            port=host[1],
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

    def _insert_new(self, cur, statement, params):
        if len(params) > 1:
            try:
                cur.executemany(statement, params)
                return cur.rowcount
            except Exception as exc:  # pylint: disable=broad-except
                if not _is_duplicate(exc):
                    raise
                # Some are stored already: start over, one row at a time.
                cur.connection.rollback()
        added = 0
        for row in params:
            try:
                cur.execute(statement, row)
                added += 1
            except Exception as exc:  # pylint: disable=broad-except
                if not _is_duplicate(exc):
                    raise
        return added

    def is_row_error(self, exc):
        if isinstance(exc, RowTooBig) or _pymysql_error(exc, "DataError", "IntegrityError"):
            return True
        return bool(exc.args) and exc.args[0] in _MYSQL_ROW_ERRNOS

    def describe(self):
        opts = self.config.mysql
        hosts = ",".join(_host_name(host) for host in self.hosts())
        return f"mysql://{opts['user']}@{hosts}/{opts['db']}"

    def server_version(self):
        return self.select("SELECT VERSION()", ())[0][0]

    def schema(self):
        tables = dict(self.select(_MYSQL_TABLES_INFO, REQUIRED_TABLES))
        unique = {}
        for table, index, column in self.select(_MYSQL_UNIQUE_KEYS, RETURNER_TABLES):
            unique.setdefault(table, {}).setdefault(index, []).append(column)
        columns = {}
        for table, *column in self.select(_MYSQL_TEXT_COLUMNS, RETURNER_TABLES):
            columns.setdefault(table, []).append(
                TextColumn(*column[:4], nullable=column[4] == "YES")
            )
        return Schema(
            tables,
            {table: {tuple(key) for key in keys.values()} for table, keys in unique.items()},
            columns,
        )


_SQLITE_SETUP_LOCK = threading.Lock()


class _SQLiteStore(_Store):
    dialect = "sqlite"
    tables = _SQLITE_TABLES

    def sql(self, statement):
        return (
            statement.replace("%s", "?")
            .replace("CHAR_LENGTH(", "LENGTH(")
            .replace("INSERT IGNORE INTO", "INSERT OR IGNORE INTO")
        )

    def _insert_new(self, cur, statement, params):
        cur.executemany(self.sql(statement) + " ON CONFLICT DO NOTHING", params)
        return cur.rowcount

    def create_table_like(self, source, target):
        # SQLite has no CREATE TABLE ... LIKE: rename the source's own DDL.
        def work(cur):
            cur.execute("SELECT `sql` FROM `sqlite_master` WHERE `name` = ?", (source,))
            (ddl,) = cur.fetchone()
            head = re.match(r"CREATE TABLE\s+(\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|\S+)", ddl)
            cur.execute(f"CREATE TABLE IF NOT EXISTS `{target}`" + ddl[head.end() :])

        self.run(work)

    def connect(self):
        path = self.config.sqlite_path
        if not os.path.exists(path):
            # Returns can hold secrets: the file is the master's alone.
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(path, timeout=10)
        # Ten reactor threads opening the file at once: switching to WAL does
        # not wait for a busy database, so one thread of a process at a time.
        with _SQLITE_SETUP_LOCK:
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

    def server_version(self):
        return "SQLite " + self.select("SELECT sqlite_version()", ())[0][0]

    def schema(self):
        def work(cur):
            cur.execute("SELECT `name` FROM `sqlite_master` WHERE `type` = 'table'")
            tables = {name: None for (name,) in cur.fetchall() if name in REQUIRED_TABLES}
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


def _postgres_sql(statement):
    """
    A statement written in MySQL's words, in PostgreSQL's: psycopg takes the
    same ``%s`` placeholders; identifiers are quoted ``"..."``; ``INSERT
    IGNORE`` is ``ON CONFLICT DO NOTHING``; text already compares byte by
    byte (``COLLATE "C"``), so no ``CAST(... AS BINARY)``.
    """
    statement = re.sub(r"CAST\((`\w+`) AS BINARY\)", r"\1", statement).replace("`", '"')
    if statement.startswith("INSERT IGNORE INTO "):
        statement = (
            "INSERT INTO " + statement[len("INSERT IGNORE INTO ") :] + " ON CONFLICT DO NOTHING"
        )
    return statement


#: SQLSTATEs of a row PostgreSQL refuses as such: data exceptions (too long
#: for varchar(50), a \u0000 jsonb cannot hold), integrity violations, and
#: a value over a limit of the server's (a jsonb too big).
_POSTGRES_ROW_STATES = ("22", "23", "54000")
#: SQLSTATEs of a transaction that lost to another (serialization failure,
#: deadlock): worth running again as it is.
_POSTGRES_CONFLICT_STATES = ("40001", "40P01")

if HAS_PSYCOPG:

    class _JsonAsText(psycopg.types.string.TextLoader):
        """
        jsonb columns read as the JSON text they hold, as MySQL's and
        SQLite's text columns are, not parsed by the driver.
        """

    class _NaiveUtc(psycopg.types.datetime.TimestamptzLoader):
        """
        ``timestamptz`` read as naive UTC, as MySQL's ``TIMESTAMP`` (with the
        session in UTC) and SQLite's ``CURRENT_TIMESTAMP`` read.
        """

        def load(self, data):
            return super().load(data).astimezone(_UTC).replace(tzinfo=None)


class _PostgresStore(_Store):
    dialect = "postgres"
    tables = _POSTGRES_TABLES

    def sql(self, statement):
        return _POSTGRES_STATEMENTS.get(statement) or _postgres_sql(statement)

    def connect(self):
        opts = self.config.postgres
        settings = {
            key: opts[key]
            for key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl")
            if opts.get(key)
        }
        if "," in str(opts["host"]):
            # Several servers (eventstore: postgres_hosts): the primary.
            settings["target_session_attrs"] = "read-write"
        conn = psycopg.connect(
            host=opts["host"],
            port=str(opts["port"]),
            user=opts["user"],
            password=opts["pass"] or "",
            dbname=opts["db"],
            # A dead server must not hold a reactor thread for long.
            connect_timeout=opts["connect_timeout"] or 3,
            # A server gone silent mid-statement (a network partition, a
            # frozen primary) fails the statement within about a minute,
            # as MySQL's read_timeout does, instead of holding the thread.
            tcp_user_timeout=60000,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
            # UTC: query() and prune() read and compare alter_time in UTC.
            options="-c TimeZone=UTC",
            application_name="eventstore",
            autocommit=False,
            **settings,
        )
        for name in ("json", "jsonb"):
            conn.adapters.register_loader(name, _JsonAsText)
        conn.adapters.register_loader("timestamptz", _NaiveUtc)
        return conn

    def insert(self, rows):
        try:
            return super().insert(rows)
        except psycopg.Error as exc:
            if not self.is_row_error(exc):
                raise
            # PostgreSQL's message quotes the refused value (CONTEXT: JSON
            # data, line 1: ...): the reason, which is logged, keeps only what
            # is wrong, not the data.  psycopg's own (a NUL in a text column,
            # refused before sending) quote nothing.
            diag = exc.diag
            detail = f" ({diag.message_detail})" if diag.message_detail else ""
            raise RowRefused(f"{diag.message_primary or exc}{detail}") from exc

    def _insert_new(self, cur, statement, params):
        # ON CONFLICT DO NOTHING needs INSERT only; rowcount adds up the new rows.
        cur.executemany(self.sql(statement) + " ON CONFLICT DO NOTHING", params)
        return cur.rowcount

    def create_table_like(self, source, target):
        def work(cur):
            cur.execute(f'CREATE TABLE IF NOT EXISTS "{target}" (LIKE "{source}" INCLUDING ALL)')

        self.run(work)

    def is_row_error(self, exc):
        if isinstance(exc, (RowTooBig, RowRefused, psycopg.DataError, psycopg.IntegrityError)):
            return True
        return str(getattr(exc, "sqlstate", None) or "").startswith(_POSTGRES_ROW_STATES)

    def is_duplicate(self, exc):
        return getattr(exc, "sqlstate", None) == "23505"  # unique_violation

    def is_conflict(self, exc):
        """
        True when the transaction lost to another one (serialization failure,
        deadlock) and may simply run again: every write of ours is idempotent.
        """
        return getattr(exc, "sqlstate", None) in _POSTGRES_CONFLICT_STATES

    def is_lost_connection(self, exc):
        # A conflict is an OperationalError too, but _Store.run asks
        # is_conflict first and runs it again on the same connection.
        return isinstance(
            exc, (psycopg.OperationalError, psycopg.InterfaceError)
        ) and not self.is_row_error(exc)

    def describe(self):
        opts = self.config.postgres
        return f"postgresql://{opts['user']}@{opts['host']}:{opts['port']}/{opts['db']}"

    def server_version(self):
        return "PostgreSQL " + self.select("SHOW server_version", ())[0][0]

    def schema(self):
        tables = {name: None for (name,) in self.select(_POSTGRES_TABLES_INFO, REQUIRED_TABLES)}
        unique = {}
        for table, index, column in self.select(_POSTGRES_UNIQUE_KEYS, RETURNER_TABLES):
            unique.setdefault(table, {}).setdefault(index, []).append(column)
        return Schema(
            tables,
            {table: {tuple(key) for key in keys.values()} for table, keys in unique.items()},
            {},
        )


# PostgreSQL's catalog, for status, init and migrate: the tables and unique
# keys in the connection's schema (search_path), readable by any user.
_POSTGRES_TABLES_INFO = (
    "SELECT table_name FROM information_schema.tables"
    " WHERE table_schema = current_schema() AND table_name IN (%s, %s, %s)"
)
_POSTGRES_UNIQUE_KEYS = (
    "SELECT t.relname, i.relname, a.attname FROM pg_index x"
    " JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid"
    " JOIN unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) ON true"
    " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum"
    " WHERE x.indisunique AND t.relnamespace = current_schema()::regnamespace"
    " AND t.relname IN (%s, %s) ORDER BY t.relname, i.relname, k.n"
)


# The few statements PostgreSQL words otherwise than by _postgres_sql's rules:
# migrate's, on its own temporary table.
_POSTGRES_STATEMENTS = {
    _ADD_UNIQUE_KEY: 'ALTER TABLE "salt_returns" ADD CONSTRAINT "salt_returns_jid_id_key" UNIQUE ("jid", "id")',
    _DROP_DUPLICATES_TABLE: 'DROP TABLE IF EXISTS pg_temp."eventstore_duplicates"',
    _CREATE_DUPLICATES_TABLE: (
        'CREATE TEMPORARY TABLE "eventstore_duplicates" ("n" BIGINT GENERATED ALWAYS AS IDENTITY'
        ' PRIMARY KEY, "jid" varchar(255) NOT NULL, "id" varchar(255) NOT NULL)'
    ),
    _DELETE_DUPLICATES: (
        'DELETE FROM "salt_returns" AS "r" USING "eventstore_duplicates" AS "d"'
        ' WHERE "r"."jid" = "d"."jid" AND "r"."id" = "d"."id" AND "d"."n" > %s AND "d"."n" <= %s'
    ),
}

_STORES = {"mysql": _MySQLStore, "sqlite": _SQLiteStore, "postgres": _PostgresStore}


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

    def check_writable(self):
        """
        Write, fsync and remove a small file in the spool folder (or, before
        the first row made it, in its parent): raises ``OSError`` when a row
        could not be spooled (disk full, read-only, not a folder).  Creates
        nothing that stays: salt-run may run as another user than the master.
        """
        folder = self.path
        if not os.path.isdir(folder):
            if os.path.lexists(folder):
                raise NotADirectoryError(f"{folder} is not a folder")
            folder = os.path.dirname(folder) or "."
        probe = os.path.join(folder, f".eventstore-probe-{uuid.uuid4().hex[:12]}.tmp")
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)

    def names(self, limit=None, folder=None):
        try:
            names = sorted(
                entry.name
                for entry in os.scandir(folder or self.path)
                if entry.name.endswith(".json") and entry.is_file()
            )
        except (FileNotFoundError, NotADirectoryError):
            return []  # nothing spooled yet, or no spool (status says it cannot be written)
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

    def __init__(self, db, spool, first_pause=1.0, longest_pause=30.0):
        self.db = db
        self.spool = spool
        # Seconds the database is left alone after a failed try, doubling per
        # failure up to ``longest_pause``; settable for tests, which must not
        # race the clock.
        self.first_pause = first_pause
        self.longest_pause = longest_pause
        self._lock = threading.Lock()
        self._probe = threading.Lock()
        self._replaying = threading.Lock()
        self._outage = None  # why the database is down, while it is
        self._retry_at = 0.0
        self._pause = 0.0
        # Unknown at start (an earlier process may have spooled): look once.
        self._spool_pending = True

    @property
    def outage(self):
        """
        Why the database is down, as this process last found it, or ``None``.
        """
        return self._outage

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
        if self.db.is_conflict(exc):
            # Not down: these rows lost to other transactions every time.  They
            # wait in the spool for the next stored row, without a pause.
            log.warning(
                "eventstore: spooling rows that conflicted %d times in a row with other"
                " writers of %s (%s); they are written back with the next stored row",
                CONFLICT_RETRIES + 1,
                self.db.describe(),
                exc,
            )
            self._spool_pending = True
            return
        with self._lock:
            if self._outage is None:
                log.warning(
                    "eventstore: %s is unavailable (%s); spooling rows to %s until it is back",
                    self.db.describe(),
                    exc,
                    self.spool.path,
                )
                self._outage = str(exc)
            self._pause = min(max(self._pause * 2, self.first_pause), self.longest_pause)
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
    returner = "pgjsonb" if dialect == "postgres" else "mysql"
    head = (
        f"-- eventstore schema for {dialect}: the {returner} returner's jids and salt_returns,\n"
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
        _catch_up_settings(__opts__)
    except ValueError as exc:
        return False, str(exc)
    if backend == "mysql" and not HAS_PYMYSQL:
        return (
            False,
            "eventstore: the mysql backend needs PyMySQL, which is not installed "
            "(pip install pymysql; on onedir masters: salt-pip install pymysql)",
        )
    if backend == "postgres" and not HAS_PSYCOPG:
        return (
            False,
            "eventstore: the postgres backend needs psycopg 3, which is not installed "
            "(pip install 'psycopg[binary]'; on onedir masters: salt-pip install 'psycopg[binary]')",
        )
    return __virtualname__


def store(tag, data):
    """
    Store one job event: what the reactor calls for ``salt/job/*/ret/*``
    (and for ``salt/job/*/new``, where that line is configured).

    A minion's return becomes one ``salt_returns`` row, and its job's load,
    from the master job cache, one ``jids`` row (a ``new`` event's load too),
    at most once each: a return that arrives again is not stored twice.  Returns of ``saltutil.find_job`` and of the functions in
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
    # The return's verdict: its job's load, stored with it, is not what is asked.
    counts, _ = _store_events([{"tag": tag, "data": data}])
    # Salt gives a reactor runner no timer: the first reaction starts the
    # reactor process's catch-up thread (a no-op once it runs).  Not when
    # called by hand (salt-run): that process ends with the call.
    if globals().get("__user__") == "Reactor":
        _start_catch_up_thread()
    return next(verdict for verdict, count in counts.items() if count)


def store_events(events):
    """
    Store many job events at once, as :py:func:`store` stores one: what the
    eventstore engine calls with each batch it reads from the master's event
    bus.  Each table's rows are written in one transaction; returns are
    checked against the master job cache with one wait for the whole batch.

    events
        A list of events, each a mapping with the event's ``tag`` and ``data``.

    Returns how many events were ``ignored`` and ``refused``, and how many
    rows were ``stored``, ``duplicate``, ``spooled``, ``dead-lettered`` and
    ``failed`` (neither stored nor spooled): an event is one row, but the
    first return of a job this process stores also brings its job's load.

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.store_events \\
            events='[{"tag": "salt/job/20260101120000000000/ret/web1", "data": {"id": "web1", "jid": "20260101120000000000", "fun": "test.ping", "return": true, "success": true}}]'
    """
    counts, load_counts = _store_events(events)
    for verdict, count in load_counts.items():
        counts[verdict] += count
    return counts


def _store_events(events):
    """
    Store ``events``; how many of them were ignored and refused and what
    became of their rows, and apart from that, what became of the loads of
    the jobs whose first returns they are.
    """
    # No __context__["retcode"] here: the reactor shares one context between
    # all its runner calls, so one failure would mark every later job failed.
    counts = dict.fromkeys(
        ("stored", "duplicate", "ignored", "refused", "spooled", "dead-lettered", "failed"), 0
    )
    load_counts = dict.fromkeys(counts, 0)
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
    rows, loads = [], []
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
            loads.extend(_job_of_return(runtime, kind, jid, data))
    _write_rows(runtime, rows, counts)
    _write_rows(runtime, loads, load_counts)
    return counts, load_counts


def _write_rows(runtime, rows, counts):
    """
    Write ``rows`` (each table's in one transaction) and count what became of them.
    """
    if not rows:
        return
    try:
        for verdict, count in runtime.writer.write_many(rows).items():
            counts[verdict] += count
    except Exception as exc:  # pylint: disable=broad-except
        # Neither the database nor the spool took them (disk full?).  A
        # driver's error text holds no credentials; the event data is not logged.
        log.error("eventstore: could not store nor spool %d rows: %s", len(rows), exc)
        counts["failed"] += len(rows)


def _job_cache_key(config, kind, jid, minion, data):
    """
    What :py:func:`_checked_row` will read from the job cache for this event,
    as arguments of ``_JobCache.ready``, or ``None``.  Raises
    :py:class:`Refused` for an event that cannot be a return.
    """
    if kind == "new":
        if not (config.verify_returns and isinstance(data, dict)):
            return None
        return None if _is_ignored(_fun_name(data.get("fun")), config.ignore_funs) else (jid,)
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
    master writes it just after it fires the event.

    A forger must not hold reactor threads that long with each event: a
    return of a job the master never saw (no job folder) is not waited for,
    and a return from a minion the job did not target, or one already
    waited for in vain, only ``UNEXPECTED_WAIT``.  So a flood of forgeries
    costs at most one full wait per (job, targeted minion) not yet returned.
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
        patience = config.job_cache_wait
        if kind == "ret" and config.verify_returns:
            if not job_cache.known(jid):
                continue
            if not job_cache.expects(jid, minion):
                patience = min(patience, UNEXPECTED_WAIT)
        waiting.append((key, patience))
    if not waiting:
        return
    started = time.monotonic()

    def all_there():
        elapsed = time.monotonic() - started
        still = []
        for key, patience in waiting:
            if job_cache.ready(*key):
                continue
            if elapsed < patience:
                still.append((key, patience))
            elif len(key) > 1 and patience == config.job_cache_wait:
                job_cache.gave_up(*key[:2])
        waiting[:] = still
        return True if not waiting else None

    _wait_for(all_there, max(patience for _, patience in waiting))


def _job_of_return(runtime, kind, jid, data):
    """
    The ``jids`` row of the job a return belongs to, with the first of its
    returns that this process stores: the reactor reacts to returns alone (a
    reaction to ``salt/job/<jid>/new`` too would double its work for
    one-minion jobs), and a job a minion started itself (``schedule``) has no
    such event anyway.  From the master job cache when verifying (the master
    writes a published job's load before publishing it, a scheduled job's
    just before its return); else from a scheduled return's own event, and
    nothing for a published job: its ``salt/job/*/new`` event brings it.
    Nothing for other events.
    """
    if kind != "ret":
        return []
    data = _unwrap(data)
    verify = runtime.config.verify_returns
    if not (verify or data.get("schedule")):
        return []
    try:
        load = runtime.job_cache.load_once(jid) if verify else data
        return [_job_load(jid, load)] if load else []
    except Refused as exc:
        log.warning("eventstore: not storing the load of job %s: %s", jid, exc)
        return []


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
        if _is_ignored(_fun_name(data.get("fun")), config.ignore_funs):
            return None
        if config.verify_returns:
            load = _wait_for(lambda: job_cache.load(jid), wait)
            if load is None:
                raise Refused("the master job cache has no such job: forged, or not local_cache")
            row = _job_load(jid, load)
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
    Create the ``jids``, ``salt_returns`` and ``eventstore_dead_letters``
    tables if they are missing, on the configured backend.  Safe to run again.
    The database user needs the CREATE privilege for this one step only.

    Tables that exist already are left as they are; when ``jids`` and
    ``salt_returns`` differ from eventstore's layout (a database made from the
    mysql returner's documented schema is utf8 and lets a return be stored
    twice), it says how, and ``eventstore.migrate`` upgrades them.

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
    return f"Tables jids, salt_returns and eventstore_dead_letters are ready in {store_.describe()}"


#: The keys of eventstore.status's report.
STATUS_KEYS = (
    "healthy",
    "retcode",
    "version",
    "loaded_from",
    "backend",
    "database",
    "server_version",
    "schema",
    "rows",
    "last_return",
    "spool",
    "dead_letters",
    "catch_up",
    "problems",
)


def status():
    """
    Whether the store is healthy, for admins and for monitoring: the backend
    and its server's version, whether the tables match eventstore's layout
    (``schema``: ``ok`` or what differs), how many rows each table holds,
    and when the last return was stored (``last_return``, UTC: the newest
    ``alter_time`` among the newest jobs' returns, read along the jid index).

    ``version`` is eventstore's release and ``loaded_from`` the file Salt
    loaded it from: the ``saltext-eventstore`` package, or a copy synced to
    the master's ``extension_modules`` (which wins over the package).

    ``spool`` says how many rows wait on disk for the database (while it is
    down, or until the next stored return writes them back) and ``dead_letters``
    how many rows the database refused as such, kept in the
    ``eventstore_dead_letters`` table or, refused even there, on disk.

    Unhealthy (``healthy: False``, the reasons under ``problems``, and
    ``retcode: 1``, which ``salt-run`` exits with): the database cannot be
    reached, or a table is missing (``jids``, ``salt_returns``, or
    ``eventstore_dead_letters``), or the spool cannot be written (disk full,
    read-only), so rows would be lost while the database is down.
    ``catch_up`` shows the last catch-up round, the last one that stored
    anything (how many returns and loads, of which jobs) and the next one's
    time.  A layout that differs is reported, not unhealthy:
    returns are still stored (``eventstore.migrate`` upgrades it).

    The row counts are exact: on tables of many millions of rows they take
    a few seconds.

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.status
        salt-run eventstore.status --out=json
    """
    writer = _runtime().writer
    store_, spool = writer.db, writer.spool
    report = dict.fromkeys(STATUS_KEYS)
    problems = report["problems"] = []
    report.update(backend=store_.dialect, database=store_.describe())
    # What this master runs: a copy synced to extension_modules wins over the package.
    report.update(version=__version__, loaded_from=__file__)
    # Rows waiting for the database, and rows it refused even as dead letters.
    report["spool"] = {"rows waiting": len(spool.names()), "folder": spool.path}
    report["dead_letters"] = {"on disk": len(spool.names(folder=spool.dead))}
    settings = _catch_up_settings(__opts__)
    report["catch_up"] = _catch_up_report(_read_catch_up_state(settings.state_path), settings)
    del report["catch_up"]["ran"]
    try:
        spool.check_writable()
    except OSError as exc:
        problems.append(
            f"the spool cannot be written, rows would be lost while the database is down: {exc}"
        )
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
                for table in RETURNER_TABLES
                if table in schema.tables
            }
            if "salt_returns" in schema.tables:
                (last,) = store_.select(_SELECT_LAST_STORED, ())[0]
                report["last_return"] = None if last is None else str(last)
            if "eventstore_dead_letters" in schema.tables:
                report["dead_letters"]["in the table"] = store_.select(
                    "SELECT COUNT(*) FROM `eventstore_dead_letters`", ()
                )[0][0]
        except Exception as exc:  # pylint: disable=broad-except
            problems.append(f"cannot read the tables: {exc}")
    report["healthy"] = not problems
    report["retcode"] = 0 if report["healthy"] else 1  # what salt-run exits with: see _failed()
    if problems:
        __context__["retcode"] = 1
    return report


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
    outputter); a return the database refused shows as ``Not stored:`` and
    the reason (a dead letter).  Without: the latest stored returns, newest job first, each
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

    def whole_fun(data, column):
        return _fun_name(data.get("fun", column))

    if jid is not None:
        returns, outputter = {}, None
        for minion_id, row_fun, full_ret in store_.select(
            _SELECT_JID.format(where=_where(where)), tuple(params)
        ):
            data = json.loads(full_ret)
            if fun is not None and not fnmatch.fnmatchcase(whole_fun(data, row_fun), str(fun)):
                continue
            returns[minion_id] = data if full else data.get("return")
            outputter = outputter or data.get("out")
        letters = _dead_letters_of(str(jid))
        if fun is None and success is None:
            for minion_id, reason in letters:
                if minion_id and (minion is None or fnmatch.fnmatchcase(minion_id, str(minion))):
                    returns.setdefault(minion_id, f"Not stored: {reason} (see eventstore.status)")
        if missing:
            returned = {minion_id for minion_id, _ in letters}
            returns.update(_missing_minions(store_, str(jid), returned))
        if outputter and not full:
            return {"outputter": outputter, "data": returns}
        return returns

    rows, offset = [], 0
    while len(rows) < limit:
        # Page on while cut names of other functions filled the page: the
        # LIMIT counts rows before the whole names are matched.
        page = store_.select(_SELECT_LATEST.format(where=_where(where)), (*params, limit, offset))
        offset += limit
        for row_jid, minion_id, row_fun, row_success, alter_time, full_ret in page:
            data = json.loads(full_ret)
            if fun is not None and not fnmatch.fnmatchcase(whole_fun(data, row_fun), str(fun)):
                continue
            rows.append(
                {
                    "jid": row_jid,
                    "minion": minion_id,
                    "fun": whole_fun(data, row_fun),
                    "success": row_success == "1",
                    "time": str(alter_time),
                    **({"full_ret": data} if full else {"return": data.get("return")}),
                }
            )
        if len(page) < limit:
            break
    return rows[:limit]


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
    report = {
        "written back": written,
        "left in the spool": left,
        "spool": writer.spool.path,
        "dead letters on disk": len(writer.spool.names(folder=writer.spool.dead)),
        "retcode": 0,
    }
    if left:
        report.update(_failed(f"{writer.db.describe()} is still unavailable"))
    return report


def backfill(jid=None, since="24h", until=None):
    """
    Copy into the database every job load and return that the master job
    cache holds and the database lacks: returns the reactor never saw (the
    master was down, the reactor queue was full, eventstore was not yet
    installed).  Reads the job cache through Salt's returner API
    (``master_job_cache``, ``local_cache`` by default), so it reaches back
    ``keep_jobs_seconds`` (24 h by default) at most.  Safe to run again: a row
    stored already is left as it is.  Says how many jobs it read and how
    many loads and returns it added (``spooled`` while the database is down,
    ``dead-lettered`` when too big for their column, ``refused`` jobs whose
    job cache entry is not a job's).

    jid
        Only this job.

    since : 24h
        Only jobs started since then (ignored with ``jid``): an age (``2h``,
        ``3d``), a date, a date and time, ISO 8601, or a jid.

    until
        Only jobs started before then, in the same forms.

    To run it every hour from the master, add to the master config:

    .. code-block:: yaml

        schedule:
          eventstore_backfill:
            function: eventstore.backfill
            hours: 1
            kwargs:
              since: 2h

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.backfill
        salt-run eventstore.backfill since=3d
        salt-run eventstore.backfill since='2026-11-26 08:00' until='2026-11-26 09:00'
        salt-run eventstore.backfill jid=20260101120000000000
    """
    runtime = _runtime()
    cache = __opts__.get("master_job_cache", "local_cache")
    returners = salt.loader.returners(__opts__, {})
    if jid is not None:
        jids = [str(jid)]
    else:
        try:
            low, high = _jid_range(since=since, until=until, now=_now())
        except ValueError as exc:
            return _invalid(exc)
        jids = sorted(
            str(j)
            for j in returners[f"{cache}.get_jids"]()
            if (low is None or str(j) >= low) and (high is None or str(j) < high)
        )
    counts, _ = _copy_jobs(runtime, jids, returners)
    return counts


def _copy_jobs(runtime, jids, returners=None):
    """
    Write every job load and return the master job cache holds for ``jids``
    (the database keeps the first copy of each): what :py:func:`backfill` and
    catch-up rounds (:py:func:`catch_up`) store.  The master's own runner and
    wheel jobs and ignored functions are left out.  Returns the counts
    :py:func:`backfill` reports and the jobs it read.
    """
    cache = __opts__.get("master_job_cache", "local_cache")
    returners = returners or salt.loader.returners(__opts__, {})
    counts = {
        "jobs read": 0,
        "loads added": 0,
        "returns added": 0,
        "spooled": 0,
        "dead-lettered": 0,
        "refused": 0,
    }
    # Written in batches, each table's in one transaction: a day of jobs on a
    # big master is many thousand rows.
    pending = {LoadRow: [], ReturnRow: []}

    def flush():
        for kind, added in ((LoadRow, "loads added"), (ReturnRow, "returns added")):
            if pending[kind]:
                written = runtime.writer.write_many(pending[kind])
                counts[added] += written["stored"]
                counts["spooled"] += written["spooled"]
                counts["dead-lettered"] += written["dead-lettered"]
                pending[kind].clear()

    read = []
    for job in jids:
        load = returners[f"{cache}.get_load"](job)
        if not load or str(load.get("fun", "")).startswith(("runner.", "wheel.")):
            continue  # gone, or the master's own runner and wheel jobs
        if _is_ignored(str(load.get("fun", "")), runtime.config.ignore_funs):
            continue
        counts["jobs read"] += 1
        read.append(job)
        rows = []
        try:
            rows.append(_job_load(job, load))
            for minion_id, ret in returners[f"{cache}.get_jid"](job).items():
                data = {
                    "id": minion_id,
                    "jid": job,
                    "fun": load["fun"],
                    "fun_args": load.get("arg", []),
                }
                data.update(ret)
                rows.append(_return_row(job, minion_id, data, runtime.config.ignore_funs))
        except Refused as exc:
            log.warning("eventstore: backfill skips job %s: %s", job, exc)
            counts["refused"] += 1
        for row in filter(None, rows):
            pending[type(row)].append(row)
        if sum(map(len, pending.values())) >= BACKFILL_BATCH:
            flush()
    flush()
    return counts, read


# ---------------------------------------------------------------------------
# Catch-up: what the job cache holds and the database lacks, stored without
# anyone running backfill.  A round looks only at the job folders the master
# changed since the last round (a new job, or a minion's return, changes its
# folder's mtime), asks the database which of those returns it lacks, and
# copies those jobs with backfill's code.  Rounds are single-flight across
# the processes that run them (the reactor's threads, the engine, salt-run)
# by an flock, and their state lives in a file, so a reload of this module or
# a master restart goes on from where the last round stopped.
# ---------------------------------------------------------------------------

CatchUpSettings = namedtuple(
    "CatchUpSettings", "enabled interval after max_jobs state_path lock_path"
)

#: How far before the last round's end a round looks again: job folders
#: whose mtime a coarse or stepped clock put just before it.
CATCH_UP_OVERLAP = 5.0

#: Seconds until the next round when a round stopped at ``catch_up_max_jobs``.
CATCH_UP_PAUSE = 5.0

#: Spooled rows a round writes back at most (the live stores write back more).
CATCH_UP_REPLAY = 10 * REPLAY_BATCH

#: Jobs named in a round's log line and in ``status``.
CATCH_UP_NAMED = 10

#: Jobs asked about in one query.
CATCH_UP_CHUNK = 500

_CATCH_UP_STORED = "SELECT `jid`, `id` FROM `salt_returns` WHERE `jid` IN ({marks})"
_CATCH_UP_LOADED = "SELECT `jid` FROM `jids` WHERE `jid` IN ({marks})"


def _catch_up_settings(opts):
    """
    The catch-up settings from the master config.  Pure: reads ``opts`` only.
    Off when the job cache is not local_cache: only its folders say cheaply
    what changed.
    """
    own = opts.get("eventstore") or {}
    cachedir = opts.get("cachedir", "/var/cache/salt/master")
    numbers = {}
    for key, default in (("interval", 60), ("after", 60), ("max_jobs", 500)):
        value = own.get(f"catch_up_{key}", default)
        try:
            numbers[key] = float(value)
        except (TypeError, ValueError):
            numbers[key] = -1.0
        if numbers[key] < (0 if key == "after" else 1):
            raise ValueError(f"eventstore: catch_up_{key} must be a number above 0, not {value!r}")
    return CatchUpSettings(
        enabled=_truthy(own.get("catch_up", True)) and _job_cache_is_local(opts),
        interval=numbers["interval"],
        after=numbers["after"],
        max_jobs=int(numbers["max_jobs"]),
        state_path=os.path.join(cachedir, "eventstore_catch_up.json"),
        lock_path=os.path.join(cachedir, "eventstore_catch_up.lock"),
    )


def _catch_up_window(state, settings, now):
    """
    ``(low, high)``: a round looks at the job folders changed after ``low``
    and up to ``high`` (epoch seconds).  Folders changed in the last
    ``catch_up_after`` seconds are left to the live path; the first round
    ever looks at the whole job cache.  Pure.
    """
    low = state.get("watermark")
    if low is None:
        low = -1.0
    elif not state.get("cut"):
        low -= CATCH_UP_OVERLAP  # a round that stopped short goes on exactly where it stopped
    return low, now - settings.after


def _catch_up_due(state, now):
    """
    True when a round is due: never ran, or its ``next round`` time passed.  Pure.
    """
    return now >= state.get("next_round", 0)


def _read_catch_up_state(path):
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_catch_up_state(path, state):
    temp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(temp, "w", encoding="utf-8") as handle:
        json.dump(state, handle, sort_keys=True)
    os.replace(temp, path)


def _changed_jobs(job_dir, low, high):
    """
    ``[(mtime, folder)]`` of the job folders of local_cache under ``job_dir``
    last changed after ``low`` and up to ``high``, oldest first.  A stat per
    job, no file read.
    """
    changed = []
    try:
        tops = list(os.scandir(job_dir))
    except FileNotFoundError:
        return changed
    for top in tops:
        if not top.is_dir(follow_symlinks=False):
            continue
        try:
            for entry in os.scandir(top.path):
                mtime = entry.stat(follow_symlinks=False).st_mtime
                if low < mtime <= high:
                    changed.append((mtime, entry.path))
        except FileNotFoundError:
            continue  # removed by the master's cleanup meanwhile
    changed.sort()
    return changed


def _cut_between_times(changed, limit):
    """
    The first ``limit`` of ``changed`` (``(mtime, folder)``, oldest first),
    fewer when the cut would part folders of one mtime: the next round goes
    on after the last mtime taken.  All of one mtime when they alone are more.
    """
    taken = changed[:limit]
    cut_time = changed[limit][0]
    while taken and taken[-1][0] == cut_time:
        taken.pop()
    return taken or [entry for entry in changed if entry[0] == cut_time]


def _returned_minions(folder):
    """
    ``(jid, {minion, ...})`` of one job folder of local_cache: its ``jid``
    file and the minions with a folder (made just before their return.p),
    or ``None`` for a folder being removed or not a job's.
    """
    try:
        try:
            with open(os.path.join(folder, "jid"), encoding="utf-8") as handle:
                jid = handle.read().strip()
        except FileNotFoundError:  # the master writes it (prep_jid); a load names it too
            with open(os.path.join(folder, ".load.p"), "rb") as handle:
                jid = str((salt.payload.load(handle) or {}).get("jid", ""))
        minions = {
            entry.name for entry in os.scandir(folder) if entry.is_dir(follow_symlinks=False)
        }
    except Exception:  # pylint: disable=broad-except
        return None  # being removed, or damaged: backfill by hand reads what is left
    return (jid, minions) if JID_PATTERN.fullmatch(jid) else None


def _jobs_lacking(store_, jobs):
    """
    Of ``jobs`` (``{jid: {minion, ...}}``), the jids whose load or one of
    whose returns the database lacks, in the order given.  The master's own
    runner jobs and ignored functions are among them (nothing of theirs is
    stored): :py:func:`_copy_jobs` leaves them out when it reads their load.
    """
    jids = list(jobs)
    lacking = []
    for start in range(0, len(jids), CATCH_UP_CHUNK):
        chunk = jids[start : start + CATCH_UP_CHUNK]
        marks = ", ".join(["%s"] * len(chunk))
        stored = {}
        for jid, minion in store_.select(_CATCH_UP_STORED.format(marks=marks), tuple(chunk)):
            stored.setdefault(jid, set()).add(minion)
        loaded = {
            jid for (jid,) in store_.select(_CATCH_UP_LOADED.format(marks=marks), tuple(chunk))
        }
        lacking.extend(
            jid for jid in chunk if jid not in loaded or jobs[jid] - stored.get(jid, set())
        )
    return lacking


def _catch_up_round(runtime, settings, state, now):
    """
    One round: write back spooled rows, then store what the job folders
    changed since the last round hold and the database lacks, at most
    ``catch_up_max_jobs`` jobs.  Returns the new state (whose ``last round``
    says what it did).  Raises when the database cannot be read: then the
    next round looks at the same folders again.
    """
    started = time.monotonic()
    writer = runtime.writer
    replayed = 0
    while replayed < CATCH_UP_REPLAY:
        step = writer.replay(REPLAY_BATCH, look=True)
        replayed += step
        if step < REPLAY_BATCH:
            break
    if not replayed and writer.spool.names(1):
        # The database takes no rows: what the round copied would only be
        # spooled again, round after round.
        raise RuntimeError(
            f"{writer.db.describe()} is unavailable ({writer.outage}): the spool waits for it"
        )
    low, high = _catch_up_window(state, settings, now)
    job_dir = os.path.join(__opts__.get("cachedir", "/var/cache/salt/master"), "jobs")
    changed = _changed_jobs(job_dir, low, high)
    cut = len(changed) > settings.max_jobs
    if cut:
        changed = _cut_between_times(changed, settings.max_jobs)
    more = cut or writer.spool.names(1) != []
    jobs = dict(filter(None, (_returned_minions(folder) for _, folder in changed)))
    lacking = _jobs_lacking(writer.db, jobs) if jobs else []
    counts, read = _copy_jobs(runtime, lacking) if lacking else ({}, [])
    stored = {
        "returns": counts.get("returns added", 0),
        "loads": counts.get("loads added", 0),
        "spooled": counts.get("spooled", 0),
        "jobs": read[:CATCH_UP_NAMED],
        "more jobs": max(len(read) - CATCH_UP_NAMED, 0),
    }
    report = {
        "at": datetime.datetime.fromtimestamp(now, _UTC).isoformat(),
        "seconds": round(time.monotonic() - started, 3),
        "jobs changed": len(changed),
        "jobs lacking rows": len(read),
        "written back from the spool": replayed,
        "stored": stored,
        "more to do": more,
    }
    if stored["returns"] or stored["loads"] or stored["spooled"]:
        log.warning(
            "eventstore: catch-up stored %d returns and %d job loads (%d spooled) that the"
            " database lacked, of %d jobs: %s%s",
            stored["returns"],
            stored["loads"],
            stored["spooled"],
            len(read),
            ", ".join(stored["jobs"]),
            f" and {stored['more jobs']} more" if stored["more jobs"] else "",
        )
    new_state = dict(state)
    new_state.update(
        watermark=changed[-1][0] if cut and changed else max(high, state.get("watermark", high)),
        next_round=now + (CATCH_UP_PAUSE if more else settings.interval),
        cut=cut,
        last_round=report,
    )
    new_state.pop("error", None)
    if stored["returns"] or stored["loads"] or stored["spooled"]:
        new_state["last_round_that_stored"] = report
    return new_state


def _catch_up_if_due(force=False):
    """
    Run a round when one is due (``force``: now), unless another thread or
    process runs one.  Returns the state after it (or as it was), with
    ``ran``: whether this call ran the round.
    """
    import fcntl  # pylint: disable=import-outside-toplevel

    settings = _catch_up_settings(__opts__)
    state = _read_catch_up_state(settings.state_path)
    if not settings.enabled:
        return dict(state, ran=False, enabled=False)
    if not (force or _catch_up_due(state, time.time())):
        return dict(state, ran=False)
    os.makedirs(os.path.dirname(settings.lock_path) or ".", exist_ok=True)
    # Read-only is enough for flock: a lock file salt-run made as root
    # still locks for a master that runs as another user.
    fd = os.open(settings.lock_path, os.O_CREAT | os.O_RDONLY, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return dict(state, ran=False)
        # Read again under the lock: another process may have just run one.
        state = _read_catch_up_state(settings.state_path)
        now = time.time()
        if not (force or _catch_up_due(state, now)):
            return dict(state, ran=False)
        try:
            state = _catch_up_round(_runtime(), settings, state, now)
        except Exception as exc:  # pylint: disable=broad-except
            log.error(
                "eventstore: catch-up round failed, tried again in %ds: %s", settings.interval, exc
            )
            state = dict(
                state,
                error=f"{datetime.datetime.fromtimestamp(now, _UTC).isoformat()}: {exc}",
                next_round=now + settings.interval,
            )
        _write_catch_up_state(settings.state_path, state)
        return dict(state, ran=True)
    finally:
        os.close(fd)  # releases the lock


def _catch_up_forever():
    """
    A round whenever one is due, for the life of the process: the loop of
    the catch-up thread of the reactor's process and of the engine's.
    """
    while True:
        try:
            state = _catch_up_if_due()
        except Exception:  # pylint: disable=broad-except
            log.exception("eventstore: catch-up")
            state = {}
        if state.get("enabled") is False:
            return
        # Woken up at least every minute: another process may have run the
        # round that was due, or the settings' interval may be shorter.
        time.sleep(min(max(state.get("next_round", 0) - time.time(), 1.0), 60.0))


#: A name in sys.modules for what must outlive a reload of this module in a
#: process: the reactor rebuilds its runner loader (a fresh copy of this
#: module, fresh globals) every reactor_refresh_interval.
_PROCESS_WIDE = "eventstore_catch_up_process_wide"


def _start_catch_up_thread():
    """
    Start this process's catch-up thread unless one runs: one per process,
    whatever copy of this module a reaction runs in.
    """
    holder = sys.modules.get(_PROCESS_WIDE)
    if holder is None:
        fresh = types.ModuleType(_PROCESS_WIDE)
        fresh.lock, fresh.thread = threading.Lock(), None
        holder = sys.modules.setdefault(_PROCESS_WIDE, fresh)
    if holder.thread is not None and holder.thread.is_alive():
        return
    with holder.lock:
        if holder.thread is not None and holder.thread.is_alive():
            return
        if not _catch_up_settings(__opts__).enabled:
            return
        holder.thread = threading.Thread(
            target=_catch_up_forever,
            name="eventstore-catch-up",
            daemon=True,
        )
        holder.thread.start()


def catch_up(force=True, background=False):
    """
    Store what the master job cache holds and the database lacks, as the
    catch-up rounds do by themselves (in the reactor's process, started by
    the first stored return, and in the eventstore engine): write back the
    spool, then look at the jobs the master changed since the last round and
    copy the loads and returns the database lacks (with
    :py:func:`backfill`'s code), at most ``catch_up_max_jobs`` jobs a round.
    Only one round runs at a time on a master, whoever starts it.

    Settings, under ``eventstore:`` in the master config:

    catch_up : True
        ``False`` turns the rounds off (then run :py:func:`backfill` from
        the master's schedule).  Off by itself when the job cache is not
        local_cache.

    catch_up_interval : 60
        Seconds between rounds (a round that stopped at ``catch_up_max_jobs``
        is followed by the next one 5 s later).

    catch_up_after : 60
        Seconds a return is left to the reactor or the engine before a round
        stores it: a return reaches the database this long after it reached
        the master at most, plus ``catch_up_interval``.

    catch_up_max_jobs : 500
        Jobs a round looks at, at most: bounded work beside live reactions.

    force : True
        Run a round now; ``False``: only when one is due.

    background : False
        ``True``: start this process's catch-up thread, which runs a round
        whenever one is due, and return at once (what the engine calls when
        it starts).

    Returns what the round did (``last_round``), the last round that stored
    anything (``last_round_that_stored``), when the next is due, and ``ran``:
    ``False`` when another process runs a round at this moment.

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.catch_up
    """
    settings = _catch_up_settings(__opts__)
    if not settings.enabled:
        return {
            "enabled": False,
            "ran": False,
            "why": "catch_up is off, or the job cache is not local_cache",
        }
    if _truthy(background):
        _start_catch_up_thread()
        return _catch_up_report(_read_catch_up_state(settings.state_path), settings)
    state = _catch_up_if_due(force=_truthy(force))
    return _catch_up_report(state, settings)


def _catch_up_report(state, settings):
    """
    What ``status`` and ``catch_up`` show of the catch-up state.  Pure.
    """
    next_round = state.get("next_round")
    return {
        "enabled": settings.enabled,
        "ran": state.get("ran", False),
        "last_round": state.get("last_round"),
        "last_round_that_stored": state.get("last_round_that_stored"),
        "error": state.get("error"),
        "next_round": None
        if next_round is None
        else datetime.datetime.fromtimestamp(next_round, _UTC).isoformat(),
        "next_round_in": None if next_round is None else max(round(next_round - time.time(), 1), 0),
    }


def _missing_minions(store_, jid, returned_elsewhere=()):
    """
    ``{minion: "Minion did not return"}`` for the minions in the job's stored
    load that have no stored return (nor one in ``returned_elsewhere``, such
    as a dead letter); empty when the load is not stored.
    """
    loads = store_.select(_SELECT_LOAD, (jid,))
    targeted = (json.loads(loads[0][0]).get("minions") or []) if loads else []
    returned = {minion_id for (minion_id,) in store_.select(_SELECT_RETURNED, (jid,))}
    returned.update(returned_elsewhere)
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
    ``salt/job/<jid>/new`` event, or the first return of a job from a
    minion's own schedule); jobs of ``saltutil.find_job`` and of
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
    ``eventstore_dead_letters`` is left alone.
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
    MySQL and PostgreSQL.
    """
    sql = store_.sql

    def find(cur):
        cur.execute(sql(_DROP_DUPLICATES_TABLE))
        cur.execute(sql(_CREATE_DUPLICATES_TABLE))
        cur.execute(sql(_FIND_DUPLICATES))
        cur.execute(sql("SELECT COALESCE(MAX(`n`), 0) FROM `eventstore_duplicates`"))
        return cur.fetchone()[0]

    def dedupe(cur, bounds):
        cur.execute(sql(_SELECT_DUPLICATES), bounds)
        copies = {}
        for row in map(StoredReturn._make, cur.fetchall()):
            copies.setdefault((row.jid, row.id), []).append(row)
        cur.execute(sql(_DELETE_DUPLICATES), bounds)
        deleted = cur.rowcount
        cur.executemany(
            sql(_REINSERT_RETURN), [tuple(_first_return(rows)) for rows in copies.values()]
        )
        return deleted - len(copies)

    last, removed = store_.run(find), 0
    try:
        for low in range(0, last, batch_size):
            removed += store_.run(lambda cur, low=low: dedupe(cur, (low, low + batch_size)))
    finally:
        store_.run(lambda cur: cur.execute(sql(_DROP_DUPLICATES_TABLE)))
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
            store_.run(lambda cur: cur.execute(store_.sql(_ADD_UNIQUE_KEY)))
            return removed
        except Exception as exc:  # pylint: disable=broad-except
            if not store_.is_duplicate(exc) or attempt == attempts:
                raise
    return removed


def migrate(test=False, batch_size=1000):
    """
    Upgrade a MySQL database made from Salt's documented mysql returner
    schema, or a PostgreSQL one made from the pgjsonb returner's, to
    eventstore's layout, which the same readers read:

    1. convert ``jids`` and ``salt_returns`` to utf8mb4 with the
       ``utf8mb4_bin`` collation (``ALTER TABLE ... CONVERT TO CHARACTER SET``,
       keeping the returner's column types), so 4-byte characters can be
       stored and minion ids differing in case stay apart (MySQL only:
       PostgreSQL's UTF-8 and its comparisons need nothing);
    2. remove duplicate returns (the same jid and minion stored more than
       once, saltstack/salt#22171 and #62834), keeping the first of each: the
       oldest ``alter_time``, then the lowest ``full_ret``;
    3. add the unique key on ``salt_returns (jid, id)``, so each return is
       stored once from then on.

    Run ``eventstore.init`` first (it adds eventstore's own table and says
    what differs).  Each ALTER TABLE copies its table and blocks writes to it
    meanwhile: on a big database, run it when little is stored, after
    ``eventstore.prune``; returns the reactor cannot store meanwhile wait in
    the spool.  The database user needs ALTER, CREATE, INSERT, SELECT, DELETE
    and CREATE TEMPORARY TABLES for this.  On SQLite there is nothing to
    migrate.

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
    if store_.dialect == "sqlite":
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
        missing = _missing_tables(schema, RETURNER_TABLES)
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
            report["steps"].append(store_.sql(statement))
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


def _shipped_reactor_sls(runner_file):
    """
    The reactor SLS that ships with this runner: ``reactor/eventstore.sls``
    next to its folder, as in the saltext-eventstore package
    (``saltext/eventstore/runners/``) and in a checkout (``_runners/``).
    """
    return os.path.join(os.path.dirname(os.path.dirname(runner_file)), "reactor", "eventstore.sls")


def _reactor_config(path):
    """
    The master config lines that hand job returns to the reactor SLS at ``path``
    (job loads are read from the job cache: no ``salt/job/*/new`` line).
    """
    return "\n".join(("reactor:", "  - 'salt/job/*/ret/*':", f"    - {path}"))


def _write_whole(path, text):
    """
    Write ``text`` to ``path`` (mode 0644) through a file renamed into place,
    so that the reactor never reads half of it.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def install_reactor(path="/srv/reactor/eventstore.sls"):
    """
    Write the reactor SLS of this eventstore release to ``path``, for a master
    that installed eventstore as a package (``salt-pip install
    saltext-eventstore``): the SLS ships inside it, in a folder whose name
    changes with the master's Python version, so the ``reactor:`` config
    names a copy at a fixed path.  Run it again after an upgrade: it rewrites
    the file when this release's SLS differs, and says so.  Returns the
    ``reactor:`` lines for the master config.

    It writes only a file ending in ``.sls`` and overwrites only an eventstore
    reactor SLS.  A runner synced from ``file_roots`` has no SLS next to it:
    copy ``reactor/eventstore.sls`` from the release instead.

    path
        Where the reactor SLS goes; default ``/srv/reactor/eventstore.sls``.

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.install_reactor
        salt-run eventstore.install_reactor path=/etc/salt/reactor/eventstore.sls
    """
    path = os.path.abspath(str(path))
    if not path.endswith(".sls"):
        return _failed(f"{path} is no .sls file: not written")
    try:
        with open(_shipped_reactor_sls(__file__), encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return _failed(
            f"No reactor SLS ships with this runner ({__file__}): "
            "copy reactor/eventstore.sls of eventstore's release instead"
        )
    try:
        with open(path, encoding="utf-8") as handle:
            current = handle.read()
    except FileNotFoundError:
        current = None
    except (OSError, UnicodeDecodeError) as exc:
        return _failed(f"Cannot read {path}: {exc}")
    release = f"eventstore {__version__}'s reactor SLS"
    if current == text:
        verdict = f"{path} is {release} already"
    elif current is not None and "runner.eventstore." not in current:
        return _failed(f"{path} exists and is not an eventstore reactor SLS: not overwritten")
    else:
        try:
            _write_whole(path, text)
        except OSError as exc:
            return _failed(f"Cannot write {path}: {exc}")
        verdict = f"{'Wrote' if current is None else 'Updated'} {path}: {release}"
    return "\n".join(
        (verdict, "The master config needs (then restart the master):", _reactor_config(path))
    )
