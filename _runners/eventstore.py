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
Runner, orchestration and wheel jobs are stored the same way, under the
master's id; the other bus events named in ``eventstore: events`` go to
``salt_events``, the table of the mysql returner's ``event_return``.

:depends: PyMySQL for the mysql backend; psycopg 3 (``psycopg[binary]``) for
    the postgres backend; nothing for SQLite.

Installation
------------

As a Salt extension: ``salt-pip install 'saltext-eventstore[mysql]'`` (``pip``
on a pip-installed master), then ``salt-run eventstore.install_reactor`` puts
the reactor SLS that ships in the package at ``/srv/reactor/eventstore.sls``;
nothing to sync.  Or synced from ``file_roots``: copy this file to
``_runners/eventstore.py`` under a ``file_roots`` directory and the modules
it imports (``src/saltext`` of the release) beside it, to
``_runners/saltext/``; the reactor SLS to ``/srv/reactor/eventstore.sls``,
then:

.. code-block:: bash

    salt-run saltutil.sync_runners
    salt-run eventstore.init

and add to the master config (then restart the master):

.. code-block:: yaml

    reactor:
      - 'salt/job/*/ret/*':
        - /srv/reactor/eventstore.sls
      - 'salt/run/*/ret':
        - /srv/reactor/eventstore.sls
      - 'salt/wheel/*/ret':
        - /srv/reactor/eventstore.sls

The ``salt/run`` and ``salt/wheel`` lines store runner and orchestration jobs
and wheel jobs, under the master's id.
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

One row per (jid, minion), returns verified against the master job cache and
stored whole, nothing lost while the database is down (the spool), nothing
stored wrong (dead letters), nothing missed for good (catch-up rounds): the
README's "What it guarantees" says how, and at what cost.

Operations
----------

``eventstore.jobs`` and ``eventstore.query`` find jobs and returns,
``eventstore.prune`` keeps the tables from growing forever (run it from the
master's ``schedule``), ``eventstore.status`` tells monitoring whether the
store is healthy, and ``eventstore.migrate`` upgrades a database made from the
mysql returner's documented schema.  ``salt-run -d eventstore`` prints each.
"""


# The runner is the loader-facing layer: each public function documents itself
# (``salt-run -d eventstore``) and calls the module that owns the work, in
# src/saltext/eventstore/ (docs/architecture.md is the map).

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

__virtualname__ = "eventstore"

#: eventstore's own modules.
_LIBRARY = "saltext.eventstore"


def _import_library():
    """
    Import eventstore's modules afresh, as Salt's loader runs this file
    afresh at each load (the reactor reloads its runners every
    ``reactor_refresh_interval``): so a runner synced anew never runs with
    the modules of the release before it.  The copy beside this file wins
    (synced: ``_runners/saltext/eventstore/``, over an installed package, as
    the synced runner does; a checkout: ``src/``); else the package's own.
    Salt's loader puts this file's folder on ``sys.path`` only while it
    loads it, so every import of these modules happens here, at load time.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    beside = [
        folder
        for folder in (here, os.path.join(os.path.dirname(here), "src"))
        if os.path.isfile(os.path.join(folder, "saltext", "eventstore", "__init__.py"))
    ][:1]
    for name in [name for name in sys.modules if name.split(".")[:2] == _LIBRARY.split(".")]:
        del sys.modules[name]
    sys.path[:0] = beside
    try:
        # pylint: disable=import-outside-toplevel,unused-import
        import saltext.eventstore  # noqa: F401
    finally:
        for folder in beside:
            sys.path.remove(folder)


try:
    _import_library()
    # pylint: disable=wrong-import-position
    from saltext.eventstore import (
        __version__,
        catchup,
        config,
        failures,
        health,
        install,
        intake,
        migration,
        progress,
        readback,
        retention,
        runtime,
        store_mysql,
        store_postgres,
    )
except ImportError as exc:
    _IMPORT_ERROR = exc
else:
    _IMPORT_ERROR = None

# Built on first use and kept for the life of the loaded module, so a stored
# return costs neither config parsing nor a new connection.
_STATE = {"runtime": None}
_STATE_LOCK = threading.Lock()


def _runtime():
    found = _STATE["runtime"]
    if found is None:
        with _STATE_LOCK:
            found = _STATE["runtime"]
            if found is None:
                found = _STATE["runtime"] = runtime.build(__opts__)
    return found


def _store():
    return _runtime().writer.db


def _failed(message):
    """
    What a runner function returns when it fails: ``{"Error": message,
    "retcode": 1}``.  The ``retcode`` key is what ``salt-run`` exits with
    (Salt 3006+; ``__context__["retcode"]`` alone only marks the job
    unsuccessful, for salt-api, orchestration and the job cache, so both).
    """
    __context__["retcode"] = 1
    return {"Error": message, "retcode": 1}


def _reporter(setting):
    """
    The :py:class:`~saltext.eventstore.progress.Progress` a long operation
    tells how far it is: it fires this runner job's progress events
    (``salt/run/<jid>/progress``, which ``salt-run`` prints as they come)
    every ``setting`` seconds (``True``: 5), or reports nowhere: with
    ``progress=False``; outside a runner job (no ``__jid_event__``: a
    hand-made loader); and in the reactor, whose threads share this module's
    ``__jid_event__``, so a report could go out under another reaction's jid.
    """
    try:
        seconds = progress.interval(setting)
    except ValueError as exc:
        raise failures.Invalid(exc) from None
    # Salt's RunnerClient.low sets both for each job, as globals of this module.
    jid_event = globals().get("__jid_event__")
    if seconds is None or jid_event is None or globals().get("__user__") == "Reactor":
        return progress.Progress()
    # A weak proxy: dead (ReferenceError) once its job ended; Progress stops at any error.
    return progress.Progress(lambda report: jid_event.fire_event(report, "progress"), seconds)


def __virtual__():
    if _IMPORT_ERROR is not None:
        return (
            False,
            f"eventstore: cannot import its modules ({_IMPORT_ERROR}); a synced runner needs"
            " them beside it: copy src/saltext of the release to _runners/saltext/ in"
            " file_roots, then salt-run saltutil.sync_runners",
        )
    try:
        backend = config.resolve_config(__opts__).backend
        config.catch_up_settings(__opts__)
    except ValueError as exc:
        return False, str(exc)
    if backend == "mysql" and not store_mysql.HAS_PYMYSQL:
        return (
            False,
            "eventstore: the mysql backend needs PyMySQL, which is not installed "
            "(pip install pymysql; on onedir masters: salt-pip install pymysql)",
        )
    if backend == "postgres" and not store_postgres.HAS_PSYCOPG:
        return (
            False,
            "eventstore: the postgres backend needs psycopg 3, which is not installed "
            "(pip install 'psycopg[binary]'; on onedir masters: salt-pip install 'psycopg[binary]')",
        )
    return __virtualname__


def store(tag, data):
    """
    Store one job event: what the reactor calls for ``salt/job/*/ret/*``,
    ``salt/run/*/ret`` and ``salt/wheel/*/ret`` (and for ``salt/job/*/new``,
    where that line is configured).  A runner or wheel job's result is
    stored as a return of the master's id; eventstore's own runner jobs never.
    Any other event whose tag matches ``eventstore: events`` becomes one
    ``salt_events`` row.

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
    counts, _ = intake.store_events(_runtime(), [{"tag": tag, "data": data}])
    # Salt gives a reactor runner no timer: the first reaction starts the
    # reactor process's catch-up thread (a no-op once it runs).  Not when
    # called by hand (salt-run): that process ends with the call.
    if globals().get("__user__") == "Reactor":
        catchup.start_catch_up_thread(__opts__, _runtime)
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
    counts, load_counts = intake.store_events(_runtime(), events)
    for verdict, count in load_counts.items():
        counts[verdict] += count
    return counts


def init():
    """
    Create the ``jids``, ``salt_returns``, ``eventstore_dead_letters`` and
    ``salt_events`` tables if they are missing, on the configured backend.  Safe to run again.
    The database user needs the CREATE privilege for this one step only.

    Tables that exist already are left as they are; when ``jids`` and
    ``salt_returns`` differ from eventstore's layout (a database made from the
    mysql returner's documented schema is utf8 and lets a return be stored
    twice), it says how, and ``eventstore.migrate`` upgrades them.

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.init
    """
    try:
        return migration.init_tables(_store())
    except failures.Failed as exc:
        return _failed(str(exc))


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
    reached, or a table is missing (``jids``, ``salt_returns``,
    ``eventstore_dead_letters``, or ``salt_events`` when ``eventstore:
    events`` names any), or the spool cannot be written (disk full,
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
    report = health.status(_runtime(), __version__, __file__)
    if report["retcode"]:
        __context__["retcode"] = 1
    return report


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
    try:
        return readback.query(
            _runtime(), jid, minion, fun, success, limit, since, until, failed, full, missing
        )
    except failures.Failed as exc:
        return _failed(str(exc))


def replay(progress=True):
    """
    Write the spool (rows kept on disk while the database was unavailable)
    back to the database now, instead of waiting for the next stored return.
    Exits non-zero when rows are left because the database is still down.

    progress : True
        Every 5 s, report the rows written back and left in the spool, and
        the rate (runner progress events, which ``salt-run`` prints as they
        come; the first after 5 s, so a short replay prints only its
        result); a number: every that many seconds; ``False``: no reports.

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.replay
        salt-run eventstore.replay progress=False --out=json
    """
    try:
        report = health.write_back(_runtime().writer, _reporter(progress))
    except failures.Failed as exc:
        return _failed(str(exc))
    if report["retcode"]:
        __context__["retcode"] = 1
    return report


def backfill(jid=None, since="24h", until=None, progress=True):
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

    progress : True
        Every 5 s, report the jobs done and left, the rate, the time to go and
        the rows added so far (runner progress events, which ``salt-run``
        prints as they come; the first after 5 s, so a short backfill prints
        only its result); a number: every that many seconds; ``False``: none.

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
        salt-run eventstore.backfill since=3d progress=False --out=json
    """
    try:
        return catchup.backfill(
            _runtime(), jid=jid, since=since, until=until, progress=_reporter(progress)
        )
    except failures.Failed as exc:
        return _failed(str(exc))


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
    return catchup.catch_up(__opts__, _runtime, force=force, background=background)


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
        return readback.jobs(_runtime(), fun, target, user, since, until, failed, limit, before)
    except failures.Failed as exc:
        return _failed(str(exc))


def events(tag=None, minion=None, since=None, until=None, limit=20, before=None):
    """
    List stored events (``salt_events``: the events whose tags match
    ``eventstore: events``, in the layout of the mysql returner's
    ``event_return``), newest first, each with its ``id``, ``tag``,
    ``sender`` (``data.id``, as Salt names who sent it: not verified, a
    minion can send any tag), ``time`` (when the master got it, UTC),
    ``master_id`` and ``data``.

    Returns ``{"events": [...], "next": <id or None>}``: when more events
    match than ``limit``, ``next`` is the cursor for the next page: pass it as
    ``before``.

    tag
        A tag or shell glob (``salt/beacon/*``); several as a list or
        comma-separated.

    minion
        The sender's id or a shell glob (``web*``).  Matched on each event's
        data (the layout has no sender column): narrow with ``tag`` or
        ``since`` on big tables; a beacon's tag holds its minion's id too
        (``tag='salt/beacon/web1/*'``).

    since
        Events stored at or after this time: ``2026-11-26``, ``'2026-11-26
        12:00'``, ISO 8601, or an age (``30m``, ``2h``, ``3d``, ``1w``: that
        long ago).  Times without an offset are UTC.

    until
        Events stored before this time; the same forms as ``since``.

    limit : 20
        How many events a page holds.

    before
        The page cursor: events stored before the one with this id (``next``
        of the page before).

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.events
        salt-run eventstore.events tag='salt/beacon/*' since=1h
        salt-run eventstore.events tag='salt/beacon/*/diskusage/*' minion='web*' limit=50 --out=json
        salt-run eventstore.events before=12345
    """
    try:
        return readback.events(_runtime(), tag, minion, since, until, limit, before)
    except failures.Failed as exc:
        return _failed(str(exc))


def prune(
    days=None, hours=None, before=None, archive=False, dry_run=False, batch_size=1000, progress=True
):
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
    - an event (``salt_events``) goes when it was stored before the cutoff
      (its ``alter_time``), looked for along its id up to the events stored
      a day after the cutoff.

    ``eventstore_dead_letters`` is left alone.
    The database user needs DELETE on these tables (and, with ``archive``,
    CREATE and INSERT on the ``*_archive`` tables).

    days
        Delete what is older than this many days (a number, ``1.5`` too).

    hours
        Delete what is older than this many hours; adds to ``days``.

    before
        Instead of an age: delete what is older than this time
        (``2026-11-01``, ``'2026-11-01 12:00'``, ISO 8601, a jid).

    archive : False
        Move the rows to ``jids_archive``, ``salt_returns_archive`` and
        ``salt_events_archive`` (created like the originals, as the mysql returner's ``archive_jobs``
        does) instead of only deleting them.

    dry_run : False
        Only count what would go.

    batch_size : 1000
        Rows per transaction.

    progress : True
        Every 5 s, report per table the rows deleted (or archived) and left,
        the rate and the time to go (runner progress events, which
        ``salt-run`` prints as they come; the first after 5 s, when the rows
        left are counted once, so a short prune prints only its result); a
        number: every that many seconds; ``False``: no reports.

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
        salt-run eventstore.prune days=30 progress=False --out=json
    """
    try:
        return retention.prune(
            _store(), days, hours, before, archive, dry_run, batch_size, _reporter(progress)
        )
    except failures.Failed as exc:
        return _failed(str(exc))


def migrate(test=False, batch_size=1000, progress=True):
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
       stored once from then on;
    4. where the returner's own ``salt_events`` is there (``event_return``),
       convert it to utf8mb4_bin too and add an index on its ``alter_time``
       (for ``eventstore.events since=`` and ``prune``); its rows stay as
       they are, and eventstore adds its own to them.

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

    progress : True
        Every 5 s, report the steps done and left, and while duplicates go
        the (jid, id) pairs done and left and the rate (runner progress
        events, which ``salt-run`` prints as they come; the first after 5 s).
        An ALTER TABLE says nothing until it ends.  A number: every that
        many seconds; ``False``: no reports.

    CLI Example:

    .. code-block:: bash

        salt-run eventstore.migrate test=True
        salt-run eventstore.migrate
        salt-run eventstore.migrate progress=False --out=json
    """
    try:
        report = migration.migrate(
            _store(), test=test, batch_size=batch_size, progress=_reporter(progress)
        )
    except failures.Failed as exc:
        return _failed(str(exc))
    if isinstance(report, dict) and report.get("retcode"):
        __context__["retcode"] = 1
    return report


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
    try:
        return install.install_reactor(__file__, __version__, path)
    except failures.Failed as exc:
        return _failed(str(exc))
