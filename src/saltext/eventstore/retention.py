"""
Keeping the tables from growing forever: what the runner's ``prune``
deletes (or archives to ``*_archive`` tables, as the mysql returner's
``archive_jobs`` does), in batches along the jid index (``salt_events``:
along its id), one transaction each, so a big table is never locked as a whole.
"""

import datetime

from saltext.eventstore.config import positive_int, truthy
from saltext.eventstore.failures import Failed, Invalid
from saltext.eventstore.progress import Progress
from saltext.eventstore.schema import EVENTS_TABLE
from saltext.eventstore.times import parse_time, time_to_jid, utc_now

#: How far past the cutoff prune walks salt_returns' jid index looking for
#: returns stored before the cutoff (a minion clock ahead of the database's).
PRUNE_JID_SLACK = datetime.timedelta(days=1)


def prune_cutoff(days=None, hours=None, before=None, now=None):
    """
    The moment before which :py:func:`prune` deletes, in whole seconds (the
    resolution of ``alter_time``).  An age (``days``, ``hours``, or both) or
    ``before`` is required: there is no default that deletes everything.
    """
    if before is not None and (days is not None or hours is not None):
        raise ValueError("give an age (days=, hours=) or before=, not both")
    if before is not None:
        try:
            cutoff = parse_time(before, now)
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


# Pruning walks a table's jid index (salt_events: its id) in batches: the
# boundary is the key `batch` rows further on, and one transaction archives
# and deletes the rows up to it (low < key <= boundary, below the scan's
# end), so a DELETE only ever locks a short range of old rows, never the table.
PRUNE_BOUNDARY = (
    "SELECT `{key}` FROM `{table}` WHERE `{key}` > %s AND `{key}` < %s"
    " ORDER BY `{key}` LIMIT 1 OFFSET %s"
)
PRUNE_BATCH = "`{key}` > %s AND `{key}` <= %s AND `{key}` < %s{extra}"
PRUNE_ARCHIVE = "INSERT IGNORE INTO `{table}_archive` SELECT * FROM `{table}` WHERE " + PRUNE_BATCH
PRUNE_DELETE = "DELETE FROM `{table}` WHERE " + PRUNE_BATCH
PRUNE_COUNT = "SELECT COUNT(*) FROM `{table}` WHERE `{key}` < %s{extra}"
# salt_events' ids grow as events are stored: the scan ends at the first one
# stored a day after the cutoff (found on the alter_time index), else past the last.
EVENTS_SCAN_END = (
    "SELECT COALESCE(MIN(`id`), (SELECT COALESCE(MAX(`id`), 0) + 1 FROM `salt_events`))"
    " FROM `salt_events` WHERE `alter_time` >= %s"
)

#: Each pruned table's walking key and its first value below every key.
PRUNE_KEYS = {"jids": ("jid", ""), "salt_returns": ("jid", ""), EVENTS_TABLE: ("id", 0)}


def prune_table(store_, table, scan_end, extra, extra_params, batch_size, archive, task):
    """
    Delete the rows of ``table`` with ``key < scan_end`` that meet ``extra``
    (``key``: the table's in :py:data:`PRUNE_KEYS`), first copying them to
    ``<table>_archive`` when ``archive``; one transaction per batch of
    ``batch_size`` rows along its index, each told to ``task`` (a
    :py:class:`~saltext.eventstore.progress.Task`).  Returns how many rows it
    deleted.
    """
    key, low = PRUNE_KEYS[table]
    archive_sql = PRUNE_ARCHIVE.format(table=table, extra=extra, key=key)
    delete_sql = PRUNE_DELETE.format(table=table, extra=extra, key=key)
    boundary_sql = PRUNE_BOUNDARY.format(table=table, key=key)
    deleted = 0
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
        task.advance(deleted)
        if not boundary:
            return deleted
        low = high


def prune(store_, days, hours, before, archive, dry_run, batch_size, progress=None):
    """
    Delete (or archive) what is older than the cutoff, as the runner's
    ``prune`` says, telling ``progress`` (a
    :py:class:`~saltext.eventstore.progress.Progress`) how far it is; what
    went, per table.  Raises :py:class:`Invalid` for bad arguments and
    :py:class:`Failed` when the database fails.
    """
    progress = progress or Progress()
    try:
        cutoff = prune_cutoff(days, hours, before, utc_now())
        batch_size = positive_int(batch_size, "batch_size")
    except ValueError as exc:
        raise Invalid(exc) from None
    archive, dry_run = truthy(archive), truthy(dry_run)
    stored_before = cutoff.strftime("%Y-%m-%d %H:%M:%S")
    plan = (
        # table, end of the key scan, what else a row must meet to go
        ("jids", time_to_jid(cutoff), "", ()),
        (
            "salt_returns",
            time_to_jid(cutoff + PRUNE_JID_SLACK),
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
        if EVENTS_TABLE in store_.schema().tables:
            ((events_end,),) = store_.select(
                EVENTS_SCAN_END, ((cutoff + PRUNE_JID_SLACK).strftime("%Y-%m-%d %H:%M:%S"),)
            )
            plan += ((EVENTS_TABLE, events_end, " AND `alter_time` < %s", (stored_before,)),)
        for table, scan_end, extra, extra_params in plan:
            count_sql = PRUNE_COUNT.format(table=table, extra=extra, key=PRUNE_KEYS[table][0])
            count_params = (scan_end, *extra_params)
            if dry_run:
                ((result[table],),) = store_.select(count_sql, count_params)
                continue
            if archive:
                store_.create_table_like(table, f"{table}_archive")
            # What is left is counted once, at the first report: a short prune never pays for it.
            task = progress.task(
                f"prune {table}",
                f"rows {result['action']}",
                left=lambda sql=count_sql, params=count_params: store_.select(sql, params)[0][0],
            )
            result[table] = prune_table(
                store_, table, scan_end, extra, extra_params, batch_size, archive, task
            )
    except Exception as exc:  # pylint: disable=broad-except
        raise Failed(
            f"Could not prune {store_.describe()}: {exc}"
            " (batches done before the error stay done; run it again)"
        ) from exc
    return result
