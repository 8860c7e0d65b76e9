"""
What the runner's ``status`` and ``replay`` report: whether the store is
healthy (the database reachable, the tables there and in eventstore's
layout, the spool writable), its rows, spool, dead letters and catch-up
rounds; and the spool written back by hand.  Reports are plain mappings
that Salt's outputters print, with the ``retcode`` salt-run exits with.
"""

from saltext.eventstore.catchup import catch_up_report, read_state
from saltext.eventstore.config import catch_up_settings
from saltext.eventstore.progress import Progress
from saltext.eventstore.schema import (
    EVENTS_TABLE,
    RETURNER_TABLES,
    missing_tables,
    required_tables,
    schema_differences,
)
from saltext.eventstore.writer import REPLAY_BATCH

# When the last return was stored, read along the jid index, not by a table scan.
SELECT_LAST_STORED = (
    "SELECT MAX(`alter_time`) FROM"
    " (SELECT `alter_time` FROM `salt_returns` ORDER BY `jid` DESC LIMIT 100) AS `newest`"
)

#: The keys of eventstore.status's report, in their order.
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


def status(runtime, version, loaded_from):
    """
    The runner's ``status`` report (its docstring says what each key holds)
    for eventstore ``version`` loaded from the file ``loaded_from``.
    """
    writer = runtime.writer
    store_, spool = writer.db, writer.spool
    report = dict.fromkeys(STATUS_KEYS)
    problems = report["problems"] = []
    report.update(backend=store_.dialect, database=store_.describe())
    # What this master runs: a copy synced to extension_modules wins over the package.
    report.update(version=version, loaded_from=loaded_from)
    # Rows waiting for the database, and rows it refused even as dead letters.
    report["spool"] = {"rows waiting": len(spool.names()), "folder": spool.path}
    report["dead_letters"] = {"on disk": len(spool.names(folder=spool.dead))}
    settings = catch_up_settings(runtime.opts)
    report["catch_up"] = catch_up_report(read_state(settings.state_path), settings)
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
                for table in missing_tables(schema, required_tables(runtime.config.event_globs))
            )
            differences = schema_differences(schema)
            report["schema"] = (
                [*differences, "salt-run eventstore.migrate test=True shows the upgrade"]
                if differences
                else "ok"
            )
            report["rows"] = {
                table: store_.select(f"SELECT COUNT(*) FROM `{table}`", ())[0][0]
                for table in (*RETURNER_TABLES, EVENTS_TABLE)
                if table in schema.tables
            }
            if "salt_returns" in schema.tables:
                (last,) = store_.select(SELECT_LAST_STORED, ())[0]
                report["last_return"] = None if last is None else str(last)
            if "eventstore_dead_letters" in schema.tables:
                report["dead_letters"]["in the table"] = store_.select(
                    "SELECT COUNT(*) FROM `eventstore_dead_letters`", ()
                )[0][0]
        except Exception as exc:  # pylint: disable=broad-except
            problems.append(f"cannot read the tables: {exc}")
    report["healthy"] = not problems
    report["retcode"] = 0 if report["healthy"] else 1  # what salt-run exits with
    return report


def write_back(writer, progress=None):
    """
    Write the whole spool back now, telling ``progress`` (a
    :py:class:`~saltext.eventstore.progress.Progress`) after each batch; the
    runner's ``replay`` report, with ``retcode: 1`` and an ``Error`` when
    rows are left.
    """
    # The spool is counted (a listing of its folder) at the first report only.
    task = (progress or Progress()).task(
        "replay", "rows written back", left=lambda: len(writer.spool.names())
    )
    written = writer.replay(REPLAY_BATCH, look=True)
    while written and written % REPLAY_BATCH == 0 and writer.spool.names(1):
        task.advance(written)
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
        report.update(Error=f"{writer.db.describe()} is still unavailable", retcode=1)
    return report
