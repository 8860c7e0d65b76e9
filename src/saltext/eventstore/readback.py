"""
Reading stored returns, jobs and events back: what the runner's ``query``,
``jobs`` and ``events`` return, the SQL they read with (along the jid index, newest first,
paged), the shell-glob filters, and the dead letters and missing minions of
a job.  Output in the shapes ``salt-run jobs.lookup_jid`` and
``jobs.list_jobs`` print.
"""

import fnmatch
import json

import salt.utils.jid

from saltext.eventstore.config import positive_int, truthy
from saltext.eventstore.rows import FUN_WIDTH, event_sender, fun_name, is_ignored
from saltext.eventstore.failures import Invalid
from saltext.eventstore.times import jid_range, jid_range_where, parse_time, utc_now

SELECT_JID = "SELECT `id`, `fun`, `full_ret` FROM `salt_returns` {where} ORDER BY `id`"
SELECT_LOAD = "SELECT `load` FROM `jids` WHERE `jid` = %s"
SELECT_RETURNED = "SELECT DISTINCT `id` FROM `salt_returns` WHERE `jid` = %s"
SELECT_DEAD_JID = "SELECT `id`, `reason` FROM `eventstore_dead_letters` WHERE `jid` = %s"
SELECT_LATEST = (
    "SELECT `jid`, `id`, `fun`, `success`, `alter_time`, `full_ret` FROM `salt_returns`"
    " {where} ORDER BY `jid` DESC, `id` LIMIT %s OFFSET %s"
)


# Jobs newest first, from the jid index; {where} narrows by time window and cursor.
SELECT_JOBS = "SELECT `jid`, `load` FROM `jids` {where} ORDER BY `jid` DESC LIMIT %s"
# A failed return is success '0', as the mysql returner writes it (Alcali counts them so).
JOB_HAS_FAILED_RETURN = (
    "EXISTS (SELECT 1 FROM `salt_returns` WHERE `salt_returns`.`jid` = `jids`.`jid`"
    " AND `salt_returns`.`success` = '0')"
)
# Returned and failed minions of a page of jobs, in one grouped query.
COUNT_RETURNS = (
    "SELECT `jid`, COUNT(DISTINCT `id`), COUNT(DISTINCT CASE WHEN `success` = '0' THEN `id` END)"
    " FROM `salt_returns` WHERE `jid` IN ({marks}) GROUP BY `jid`"
)


def glob_to_like(glob):
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


def parse_globs(value):
    """
    Shell globs from a glob, a comma-separated list of them, or a list (as
    ``jobs.list_jobs`` takes them); ``None`` for no filter.
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple, set)):
        return tuple(str(glob) for glob in value)
    return tuple(glob.strip() for glob in str(value).split(",") if glob.strip())


def matches(value, globs):
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


def job_matches(load, funs, targets, users, ignore_funs):
    """
    Whether a job's load passes the ``jobs`` filters.  Jobs of functions whose
    returns are never stored (``saltutil.find_job``, ``ignore_funs``) are hidden.
    """
    fun = load.get("fun")
    if isinstance(fun, str) and is_ignored(fun, ignore_funs):
        return False
    return (
        matches(fun, funs)
        and matches(load.get("tgt"), targets)
        and matches(load.get("user"), users)
    )


def job_summary(jid, load, returned, failed):
    """
    One job as ``salt-run jobs.list_jobs`` shows it (Salt's own format), plus
    how many minions returned and how many of those failed.
    """
    summary = salt.utils.jid.format_jid_instance_ext(jid, load)
    summary.update({"Returned": returned, "Failed": failed})
    return summary


def where_clause(conditions):
    return ("WHERE " + " AND ".join(conditions)) if conditions else ""


def query(runtime, jid, minion, fun, success, limit, since, until, failed, full, missing):
    """
    The stored returns the runner's ``query`` shows (its docstring says
    what each argument does).  Raises :py:class:`Invalid` for bad arguments.
    """
    full, missing = truthy(full), truthy(missing)
    try:
        if truthy(failed):
            if success is not None and truthy(success):
                raise ValueError("failed=True and success=True exclude each other")
            success = False
        if missing and jid is None:
            raise ValueError("missing=True needs a jid: the minions a job targeted")
        low, high = jid_range(since, until, now=utc_now())
        limit = positive_int(limit, "limit")
    except ValueError as exc:
        raise Invalid(exc) from None
    store_ = runtime.writer.db
    where, params = jid_range_where(low, high)
    if jid is not None:
        where.append("`jid` = %s")
        params.append(str(jid))
    if minion is not None:
        where.append("`id` LIKE %s ESCAPE '!'")
        params.append(glob_to_like(str(minion)))
    if fun is not None:
        # A name longer than the column is stored cut: let every cut name
        # through here and match the whole name, from full_ret, below.
        where.append(f"(`fun` LIKE %s ESCAPE '!' OR CHAR_LENGTH(`fun`) = {FUN_WIDTH})")
        params.append(glob_to_like(str(fun)))
    if success is not None:
        where.append("`success` = %s")
        params.append("1" if truthy(success) else "0")

    def whole_fun(data, column):
        return fun_name(data.get("fun", column))

    if jid is not None:
        returns, outputter = {}, None
        for minion_id, row_fun, full_ret in store_.select(
            SELECT_JID.format(where=where_clause(where)), tuple(params)
        ):
            data = json.loads(full_ret)
            if fun is not None and not fnmatch.fnmatchcase(whole_fun(data, row_fun), str(fun)):
                continue
            returns[minion_id] = data if full else data.get("return")
            outputter = outputter or data.get("out")
        letters = dead_letters_of(runtime.writer, str(jid))
        if fun is None and success is None:
            for minion_id, reason in letters:
                if minion_id and (minion is None or fnmatch.fnmatchcase(minion_id, str(minion))):
                    returns.setdefault(minion_id, f"Not stored: {reason} (see eventstore.status)")
        if missing:
            returned = {minion_id for minion_id, _ in letters}
            returns.update(missing_minions(store_, str(jid), returned))
        if outputter and not full:
            return {"outputter": outputter, "data": returns}
        return returns

    rows, offset = [], 0
    while len(rows) < limit:
        # Page on while cut names of other functions filled the page: the
        # LIMIT counts rows before the whole names are matched.
        page = store_.select(
            SELECT_LATEST.format(where=where_clause(where)), (*params, limit, offset)
        )
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


def dead_letters_of(writer, jid):
    """
    ``(minion, reason)`` of each dead letter of a job, from the table and from
    the spool's ``dead`` folder (those even the dead-letter table refused).
    """
    letters = list(writer.db.select(SELECT_DEAD_JID, (jid,)))
    spool = writer.spool
    for name in spool.names(folder=spool.dead):
        if name.startswith(f"{jid}-"):
            letter = spool.read(name, folder=spool.dead)
            if letter is not None:
                letters.append((letter.id, letter.reason))
    return letters


def missing_minions(store_, jid, returned_elsewhere=()):
    """
    ``{minion: "Minion did not return"}`` for the minions in the job's stored
    load that have no stored return (nor one in ``returned_elsewhere``, such
    as a dead letter); empty when the load is not stored.
    """
    loads = store_.select(SELECT_LOAD, (jid,))
    targeted = (json.loads(loads[0][0]).get("minions") or []) if loads else []
    returned = {minion_id for (minion_id,) in store_.select(SELECT_RETURNED, (jid,))}
    returned.update(returned_elsewhere)
    return {
        minion_id: "Minion did not return" for minion_id in targeted if minion_id not in returned
    }


def jobs(runtime, fun, target, user, since, until, failed, limit, before):
    """
    The page of stored jobs the runner's ``jobs`` shows (its docstring says
    what each argument does).  Raises :py:class:`Invalid` for bad arguments.
    """
    try:
        low, high = jid_range(since, until, before, utc_now())
        limit = positive_int(limit, "limit")
    except ValueError as exc:
        raise Invalid(exc) from None
    store_ = runtime.writer.db
    funs, targets, users = parse_globs(fun), parse_globs(target), parse_globs(user)
    only_failed = truthy(failed)

    # fun, target and user live in the JSON load, so they are matched here;
    # the time window bounds the scan, which goes down the jid index in chunks
    # until one job more than a page has matched (that one says: more to come).
    page, chunk = [], max(limit + 1, 200)
    while len(page) <= limit:
        conditions, params = jid_range_where(low, high)
        if only_failed:
            conditions.append(JOB_HAS_FAILED_RETURN)
        rows = store_.select(SELECT_JOBS.format(where=where_clause(conditions)), (*params, chunk))
        for jid, load_text in rows:
            load = json.loads(load_text)
            if job_matches(load, funs, targets, users, store_.config.ignore_funs):
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
            COUNT_RETURNS.format(marks=marks), tuple(jid for jid, _ in page)
        ):
            counts[jid] = (int(returned), int(failures))
    return {
        "jobs": [job_summary(jid, load, *counts.get(jid, (0, 0))) for jid, load in page],
        "next": page[-1][0] if more else None,
    }


# Events newest first along the primary key; {where} narrows by tag (its
# index), time window (the alter_time index) and page cursor.
SELECT_EVENTS = (
    "SELECT `id`, `tag`, `data`, `alter_time`, `master_id` FROM `salt_events`"
    " {where} ORDER BY `id` DESC LIMIT %s"
)


def events(runtime, tag, minion, since, until, limit, before):
    """
    The page of stored events the runner's ``events`` shows (its docstring
    says what each argument does).  Raises :py:class:`Invalid` for bad arguments.

    ``minion`` matches the sender, ``data.id``: event_return's layout has no
    column for it, so it is matched here, on pages read within the tag and
    time filters, as ``jobs`` matches a load's fields.
    """
    now = utc_now()
    try:
        bounds = {
            name: parse_time(value, now).strftime("%Y-%m-%d %H:%M:%S")
            for name, value in (("since", since), ("until", until))
            if value is not None
        }
        limit = positive_int(limit, "limit")
        if before is not None:
            before = positive_int(before, "before (a page cursor from 'next')")
    except ValueError as exc:
        raise Invalid(exc) from None
    tags, senders = parse_globs(tag), parse_globs(minion)
    conditions, params = [], []
    if tags:
        conditions.append("(" + " OR ".join(["`tag` LIKE %s ESCAPE '!'"] * len(tags)) + ")")
        params.extend(glob_to_like(glob) for glob in tags)
    if "since" in bounds:
        conditions.append("`alter_time` >= %s")
        params.append(bounds["since"])
    if "until" in bounds:
        conditions.append("`alter_time` < %s")
        params.append(bounds["until"])
    store_ = runtime.writer.db
    page, chunk = [], max(limit + 1, 200)
    while len(page) <= limit:
        cursor = ["`id` < %s"] if before is not None else []
        rows = store_.select(
            SELECT_EVENTS.format(where=where_clause(conditions + cursor)),
            (*params, *([before] if before is not None else []), chunk),
        )
        for event_id, event_tag, data, alter_time, master_id in rows:
            # LIKE ignores case on SQLite: the glob decides.
            if not matches(event_tag, tags):
                continue
            data = json.loads(data)
            sender = event_sender(data)
            if matches(sender, senders):
                page.append(
                    {
                        "id": int(event_id),
                        "tag": event_tag,
                        "sender": sender,
                        "time": str(alter_time),
                        "master_id": master_id,
                        "data": data,
                    }
                )
                if len(page) > limit:
                    break
        if len(rows) < chunk:
            break
        before = rows[-1][0]
    more, page = len(page) > limit, page[:limit]
    return {"events": page, "next": page[-1]["id"] if more else None}
