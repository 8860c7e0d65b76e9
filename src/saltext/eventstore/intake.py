"""
Events in: what :py:func:`store` and :py:func:`store_events` of the
runner do with the events the reactor and the engine hand over.  Each job
event is parsed, filtered and checked against the master job cache (waiting
for the master to write it, with a shorter patience for what looks forged),
turned into rows by :py:mod:`saltext.eventstore.rows`, and written by the
writer, with the job's load once per job and process.  The master's own
jobs' results (runner and wheel jobs: ``salt/run/<jid>/ret``,
``salt/wheel/<jid>/ret``) take the same path, keyed by the master's id.  Any
other event whose tag matches ``eventstore: events`` becomes a
``salt_events`` row as it is.
"""

import logging
import time

from saltext.eventstore.jobcache import wait_for
from saltext.eventstore.rows import (
    MASTER_JOB_TAGS,
    Refused,
    dead_letter,
    event_row,
    fun_name,
    is_ignored,
    is_stored_event,
    is_trimmed,
    job_load,
    load_row,
    master_job_fun,
    master_job_load,
    master_job_row,
    parse_tag,
    return_fun,
    return_row,
    unwrap,
    with_job_cache,
    with_master_job_cache,
)

from saltext.eventstore.times import utc_now

log = logging.getLogger(__name__)

#: Seconds to wait for the job cache to hold a return the job's minion
#: list did not expect (a syndic's minion, stale grains) or that was already
#: waited for in vain: a forgery, most likely.  The master writes a genuine
#: one milliseconds after firing it; 10 reactor threads waiting this long
#: each still take forgeries as fast as the reactor renders them (~50/s).
#: backfill stores a genuine one this misses.
UNEXPECTED_WAIT = 0.2


def store_events(runtime, events):
    """
    Store ``events`` (each a mapping with a ``tag`` and ``data``); how many
    of them were ignored and refused and what became of their rows, and
    apart from that, what became of the loads of the jobs whose first
    returns they are.
    """
    # No __context__["retcode"] here: the reactor shares one context between
    # all its runner calls, so one failure would mark every later job failed.
    counts = dict.fromkeys(
        ("stored", "duplicate", "ignored", "refused", "spooled", "dead-lettered", "failed"), 0
    )
    load_counts = dict.fromkeys(counts, 0)
    jobs, rows, loads = [], [], []
    for event in events or ():
        tag = event.get("tag") if isinstance(event, dict) else None
        parsed = parse_tag(tag)
        if parsed is not None:
            kind, jid, minion = parsed
            if kind in MASTER_JOB_TAGS:
                # The id the master job cache keeps the master's own jobs under
                # (``<host>_master`` when the config sets none), as Salt reads it.
                minion = runtime.opts.get("id") or ""
            jobs.append((tag, kind, jid, minion, event.get("data")))
        elif is_stored_event(tag, runtime.config.event_globs):
            try:
                rows.append(
                    event_row(tag, event.get("data"), runtime.opts.get("id", ""), utc_now())
                )
            except Refused as exc:
                log.warning("eventstore: not storing the event %r: %s", tag[:300], exc)
                counts["refused"] += 1
        else:
            counts["ignored"] += 1
    await_job_cache(runtime, jobs)
    for tag, kind, jid, minion, data in jobs:
        try:
            row = checked_row(runtime, kind, jid, minion, data, wait=0)
        except Refused as exc:
            log.warning("eventstore: not storing %s: %s", tag[:300], exc)
            counts["refused"] += 1
            continue
        if row is None:
            counts["ignored"] += 1
        else:
            rows.append(row)
            loads.extend(job_of_return(runtime, kind, jid, minion, data))
    write_rows(runtime, rows, counts)
    write_rows(runtime, loads, load_counts)
    return counts, load_counts


def write_rows(runtime, rows, counts):
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


def job_cache_key(config, kind, jid, minion, data):
    """
    What :py:func:`checked_row` will read from the job cache for this event,
    as arguments of ``JobCache.ready``, or ``None``.  Raises
    :py:class:`Refused` for an event that cannot be a return.
    """
    if kind == "new":
        if not (config.verify_returns and isinstance(data, dict)):
            return None
        return None if is_ignored(fun_name(data.get("fun")), config.ignore_funs) else (jid,)
    if kind in MASTER_JOB_TAGS:
        # Nothing to wait for: Salt writes a runner or wheel job's result to
        # the job cache before it fires the event.
        return None
    data = unwrap(data)
    if return_fun(jid, minion, data, config.ignore_funs) is None:
        return None
    if config.verify_returns or is_trimmed(data):
        return (jid, minion, "out" in data)
    return None


def await_job_cache(runtime, jobs):
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
            key = job_cache_key(config, kind, jid, minion, data)
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

    wait_for(all_there, max(patience for _, patience in waiting))


def job_of_return(runtime, kind, jid, minion, data):
    """
    The ``jids`` row of the job a return belongs to, with the first of its
    returns that this process stores: the reactor reacts to returns alone (a
    reaction to ``salt/job/<jid>/new`` too would double its work for
    one-minion jobs), and a job a minion started itself (``schedule``) has no
    such event anyway.  From the master job cache when verifying (the master
    writes a published job's load before publishing it, a scheduled job's
    just before its return); else from a scheduled return's own event, and
    nothing for a published job: its ``salt/job/*/new`` event brings it.
    A master's runner or wheel job has one result, and its load with it.
    Nothing for other events.
    """
    verify = runtime.config.verify_returns
    if kind in MASTER_JOB_TAGS:
        try:
            if verify:
                load = runtime.job_cache.load_once(jid)
                data = load.get("return") if load else None
            return [master_job_load(jid, minion, data)] if data is not None else []
        except Refused as exc:
            log.warning("eventstore: not storing the load of job %s: %s", jid, exc)
            return []
    if kind != "ret":
        return []
    data = unwrap(data)
    if not (verify or data.get("schedule")):
        return []
    try:
        load = runtime.job_cache.load_once(jid) if verify else data
        return [job_load(jid, load)] if load else []
    except Refused as exc:
        log.warning("eventstore: not storing the load of job %s: %s", jid, exc)
        return []


def checked_row(runtime, kind, jid, minion, data, wait=None):
    """
    The row for one event; with ``verify_returns``, built from the master's
    job cache, which also completes a return the event bus trimmed.  ``wait``:
    how long to wait for the job cache (default ``job_cache_wait``).
    """
    config, job_cache = runtime.config, runtime.job_cache
    wait = config.job_cache_wait if wait is None else wait
    if kind == "new":
        row = load_row(jid, data)
        if is_ignored(fun_name(data.get("fun")), config.ignore_funs):
            return None
        if config.verify_returns:
            load = wait_for(lambda: job_cache.load(jid), wait)
            if load is None:
                raise Refused("the master job cache has no such job: forged, or not local_cache")
            row = job_load(jid, load)
        return row
    if kind in MASTER_JOB_TAGS:
        return checked_master_job_row(runtime, kind, jid, minion, data)
    data = unwrap(data)
    if not (config.verify_returns or is_trimmed(data)):
        return return_row(jid, minion, data, config.ignore_funs)
    # Checked, but not serialised: the row is built from the job cache's copy.
    if return_fun(jid, minion, data, config.ignore_funs) is None:
        return None
    cached = wait_for(lambda: job_cache.ret(jid, minion), wait)
    if cached is None:
        if config.verify_returns:
            raise Refused("the master job cache has no such return: forged, or not local_cache")
        row = return_row(jid, minion, data, config.ignore_funs)
        return dead_letter(row, "the event bus trimmed it and the job cache does not have it")
    job_fun = job_cache.fun(jid) if config.verify_returns else None
    return return_row(jid, minion, with_job_cache(data, cached, job_fun), config.ignore_funs)


#: The master options that keep a runner's or wheel's jobs out of the job
#: cache: ``salt-run``'s, and the client's of the reactor, salt-api and
#: orchestration steps (``<class name>_returns``, salt/client/mixins.py).
UNCACHED_BY = {
    "runner": ("runner_returns", "runnerclient_returns"),
    "wheel": ("wheelclient_returns",),
}


def checked_master_job_row(runtime, kind, jid, master_id, data):
    """
    The row of a master's runner or wheel job result; with
    ``verify_returns``, built from the master job cache's copy, which Salt
    writes before it fires the event (a forgery finds none), and whose
    ``success`` is the job's.  Ignored when the master's config keeps such
    jobs out of its job cache.
    """
    config = runtime.config
    if not config.verify_returns:
        return master_job_row(kind, jid, master_id, data, config.ignore_funs)
    if master_job_fun(kind, jid, data, config.ignore_funs) is None:
        return None
    cached = runtime.job_cache.ret(jid, master_id)
    if cached is None and not all(runtime.opts.get(option, True) for option in UNCACHED_BY[kind]):
        return None  # the master keeps no copy to check it against, by its config
    if cached is None:
        raise Refused(f"the master job cache has no such {kind} job: forged, or not local_cache")
    return master_job_row(
        kind, jid, master_id, with_master_job_cache(data, cached), config.ignore_funs
    )
