"""
What the master job cache holds and the database lacks, copied into it:
:py:func:`backfill` (a time window, by hand or from the schedule) and the
catch-up rounds that run by themselves (:py:func:`catch_up_if_due`, in a
thread of the reactor's process and of the engine's).

A round looks only at the job folders the master changed since the last
round (a new job, or a minion's return, changes its folder's mtime), asks
the database which of those returns it lacks, and copies those jobs with
backfill's code.  Rounds are single-flight across the processes that run
them (the reactor's threads, the engine, salt-run) by an flock on
``<cachedir>/eventstore_catch_up.lock``, and their state lives in
``<cachedir>/eventstore_catch_up.json``, so a reload of the runner or a
master restart goes on from where the last round stopped.  The catch-up
thread is one per process, kept in ``sys.modules`` across runner reloads.
"""

import datetime
import json
import logging
import os
import sys
import threading
import time
import types

import salt.loader
import salt.payload

from saltext.eventstore.config import catch_up_settings, truthy
from saltext.eventstore.rows import (
    JID_PATTERN,
    MASTER_JOB_TAGS,
    LoadRow,
    Refused,
    ReturnRow,
    is_ignored,
    job_load,
    master_job_load,
    master_job_row,
    return_row,
)
from saltext.eventstore.failures import Invalid
from saltext.eventstore.progress import Progress
from saltext.eventstore.times import UTC, jid_range, utc_now
from saltext.eventstore.writer import REPLAY_BATCH

log = logging.getLogger(__name__)

#: Rows backfill writes per transaction.
BACKFILL_BATCH = 500


def backfill(runtime, jid=None, since="24h", until=None, progress=None):
    """
    Copy what the job cache holds of ``jid``, or of the jobs started in the
    window ``since``..``until``, and the database lacks (the runner's
    ``backfill`` says more), telling ``progress`` (a
    :py:class:`~saltext.eventstore.progress.Progress`) how far it is; the
    counts it reports.  Raises :py:class:`Invalid` for a window it cannot read.
    """
    opts = runtime.opts
    cache = opts.get("master_job_cache", "local_cache")
    returners = salt.loader.returners(opts, {})
    if jid is not None:
        jids = [str(jid)]
    else:
        try:
            low, high = jid_range(since=since, until=until, now=utc_now())
        except ValueError as exc:
            raise Invalid(exc) from None
        jids = sorted(
            str(j)
            for j in returners[f"{cache}.get_jids"]()
            if (low is None or str(j) >= low) and (high is None or str(j) < high)
        )
    counts, _ = copy_jobs(runtime, jids, returners, progress)
    return counts


def copy_jobs(runtime, jids, returners=None, progress=None):
    """
    Write every job load and return the master job cache holds for ``jids``
    (the database keeps the first copy of each): what :py:func:`backfill` and
    catch-up rounds (:py:func:`catch_up`) store.  eventstore's own runner
    jobs and ignored functions are left out.  ``progress`` (a
    :py:class:`~saltext.eventstore.progress.Progress`) is told the jobs done
    after each job.  Returns the counts :py:func:`backfill` reports and the
    jobs it read.
    """
    cache = runtime.opts.get("master_job_cache", "local_cache")
    returners = returners or salt.loader.returners(runtime.opts, {})
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
    task = (progress or Progress()).task("backfill", "jobs done", left=len(jids))
    for done, job in enumerate(jids):
        task.advance(done, counts)
        load = returners[f"{cache}.get_load"](job)
        # Gone, or eventstore's own runner jobs (one per reaction) and
        # ignored functions.
        if not load or is_ignored(str(load.get("fun", "")), runtime.config.ignore_funs):
            continue
        counts["jobs read"] += 1
        read.append(job)
        try:
            rows = rows_of_job(job, load, returners[f"{cache}.get_jid"](job), runtime.config)
        except Refused as exc:
            log.warning("eventstore: backfill skips job %s: %s", job, exc)
            counts["refused"] += 1
            rows = []
        for row in filter(None, rows):
            pending[type(row)].append(row)
        if sum(map(len, pending.values())) >= BACKFILL_BATCH:
            flush()
    flush()
    return counts, read


def rows_of_job(jid, load, returns, config):
    """
    The rows of one job of the master job cache: its load and its returns
    (``{minion: ret}``, local_cache's ``get_jid``).  A master's runner or
    wheel job has one return, its whole result data, under the master's id.
    """
    fun = str(load.get("fun", ""))
    kind = fun.partition(".")[0]
    if kind in MASTER_JOB_TAGS:
        rows = []
        for master_id, ret in returns.items():
            rows.append(master_job_load(jid, master_id, load.get("return")))
            rows.append(master_job_row(kind, jid, master_id, ret.get("return"), config.ignore_funs))
        return rows
    rows = [job_load(jid, load)]
    for minion_id, ret in returns.items():
        data = {"id": minion_id, "jid": jid, "fun": load["fun"], "fun_args": load.get("arg", [])}
        data.update(ret)
        rows.append(return_row(jid, minion_id, data, config.ignore_funs))
    return rows


# ---------------------------------------------------------------------------
# The catch-up rounds.
# ---------------------------------------------------------------------------

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

CATCH_UP_STORED = "SELECT `jid`, `id` FROM `salt_returns` WHERE `jid` IN ({marks})"
CATCH_UP_LOADED = "SELECT `jid` FROM `jids` WHERE `jid` IN ({marks})"


def catch_up_window(state, settings, now):
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


def catch_up_due(state, now):
    """
    True when a round is due: never ran, or its ``next round`` time passed.  Pure.
    """
    return now >= state.get("next_round", 0)


def read_state(path):
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def write_state(path, state):
    temp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(temp, "w", encoding="utf-8") as handle:
        json.dump(state, handle, sort_keys=True)
    os.replace(temp, path)


def changed_jobs(job_dir, low, high):
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


def cut_between_times(changed, limit):
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


def returned_minions(folder):
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


def jobs_lacking(store_, jobs):
    """
    Of ``jobs`` (``{jid: {minion, ...}}``), the jids whose load or one of
    whose returns the database lacks, in the order given.  eventstore's own
    runner jobs and ignored functions are among them (nothing of theirs is
    stored): :py:func:`copy_jobs` leaves them out when it reads their load.
    """
    jids = list(jobs)
    lacking = []
    for start in range(0, len(jids), CATCH_UP_CHUNK):
        chunk = jids[start : start + CATCH_UP_CHUNK]
        marks = ", ".join(["%s"] * len(chunk))
        stored = {}
        for jid, minion in store_.select(CATCH_UP_STORED.format(marks=marks), tuple(chunk)):
            stored.setdefault(jid, set()).add(minion)
        loaded = {
            jid for (jid,) in store_.select(CATCH_UP_LOADED.format(marks=marks), tuple(chunk))
        }
        lacking.extend(
            jid for jid in chunk if jid not in loaded or jobs[jid] - stored.get(jid, set())
        )
    return lacking


def catch_up_round(runtime, settings, state, now):
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
    low, high = catch_up_window(state, settings, now)
    job_dir = os.path.join(runtime.opts.get("cachedir", "/var/cache/salt/master"), "jobs")
    changed = changed_jobs(job_dir, low, high)
    cut = len(changed) > settings.max_jobs
    if cut:
        changed = cut_between_times(changed, settings.max_jobs)
    more = cut or writer.spool.names(1) != []
    jobs = dict(filter(None, (returned_minions(folder) for _, folder in changed)))
    lacking = jobs_lacking(writer.db, jobs) if jobs else []
    counts, read = copy_jobs(runtime, lacking) if lacking else ({}, [])
    stored = {
        "returns": counts.get("returns added", 0),
        "loads": counts.get("loads added", 0),
        "spooled": counts.get("spooled", 0),
        "jobs": read[:CATCH_UP_NAMED],
        "more jobs": max(len(read) - CATCH_UP_NAMED, 0),
    }
    report = {
        "at": datetime.datetime.fromtimestamp(now, UTC).isoformat(),
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


def catch_up_if_due(opts, get_runtime, force=False):
    """
    Run a round when one is due (``force``: now), unless another thread or
    process runs one.  Returns the state after it (or as it was), with
    ``ran``: whether this call ran the round.
    """
    import fcntl  # pylint: disable=import-outside-toplevel

    settings = catch_up_settings(opts)
    state = read_state(settings.state_path)
    if not settings.enabled:
        return dict(state, ran=False, enabled=False)
    if not (force or catch_up_due(state, time.time())):
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
        state = read_state(settings.state_path)
        now = time.time()
        if not (force or catch_up_due(state, now)):
            return dict(state, ran=False)
        try:
            state = catch_up_round(get_runtime(), settings, state, now)
        except Exception as exc:  # pylint: disable=broad-except
            log.error(
                "eventstore: catch-up round failed, tried again in %ds: %s", settings.interval, exc
            )
            state = dict(
                state,
                error=f"{datetime.datetime.fromtimestamp(now, UTC).isoformat()}: {exc}",
                next_round=now + settings.interval,
            )
        write_state(settings.state_path, state)
        return dict(state, ran=True)
    finally:
        os.close(fd)  # releases the lock


def catch_up_forever(opts, get_runtime):
    """
    A round whenever one is due, for the life of the process: the loop of
    the catch-up thread of the reactor's process and of the engine's.
    """
    while True:
        try:
            state = catch_up_if_due(opts, get_runtime)
        except Exception:  # pylint: disable=broad-except
            log.exception("eventstore: catch-up")
            state = {}
        if state.get("enabled") is False:
            return
        # Woken up at least every minute: another process may have run the
        # round that was due, or the settings' interval may be shorter.
        time.sleep(min(max(state.get("next_round", 0) - time.time(), 1.0), 60.0))


#: A name in sys.modules for what must outlive a reload of the runner in a
#: process: the reactor rebuilds its runner loader (a fresh copy of the
#: runner and of these modules, fresh globals) every reactor_refresh_interval.
PROCESS_WIDE = "eventstore_catch_up_process_wide"


def start_catch_up_thread(opts, get_runtime):
    """
    Start this process's catch-up thread unless one runs: one per process,
    whatever load of the runner a reaction runs in.
    """
    holder = sys.modules.get(PROCESS_WIDE)
    if holder is None:
        fresh = types.ModuleType(PROCESS_WIDE)
        fresh.lock, fresh.thread = threading.Lock(), None
        holder = sys.modules.setdefault(PROCESS_WIDE, fresh)
    if holder.thread is not None and holder.thread.is_alive():
        return
    with holder.lock:
        if holder.thread is not None and holder.thread.is_alive():
            return
        if not catch_up_settings(opts).enabled:
            return
        holder.thread = threading.Thread(
            target=catch_up_forever,
            args=(opts, get_runtime),
            name="eventstore-catch-up",
            daemon=True,
        )
        holder.thread.start()


def catch_up(opts, get_runtime, force=True, background=False):
    """
    What the runner's ``catch_up`` does and returns: a round now (``force``)
    or when due, or the catch-up thread started (``background``).
    ``get_runtime()`` gives the runtime of the loaded runner, built only
    when a round runs.
    """
    settings = catch_up_settings(opts)
    if not settings.enabled:
        return {
            "enabled": False,
            "ran": False,
            "why": "catch_up is off, or the job cache is not local_cache",
        }
    if truthy(background):
        start_catch_up_thread(opts, get_runtime)
        return catch_up_report(read_state(settings.state_path), settings)
    state = catch_up_if_due(opts, get_runtime, force=truthy(force))
    return catch_up_report(state, settings)


def catch_up_report(state, settings):
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
        else datetime.datetime.fromtimestamp(next_round, UTC).isoformat(),
        "next_round_in": None if next_round is None else max(round(next_round - time.time(), 1), 0),
    }
