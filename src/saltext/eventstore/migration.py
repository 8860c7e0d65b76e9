"""
Making and upgrading the tables: ``init`` (create what is missing, say how
existing tables differ) and ``migrate`` (a database made from the mysql or
pgjsonb returner's documented schema brought to eventstore's layout:
utf8mb4_bin, duplicate returns removed keeping the first, the unique key on
``salt_returns (jid, id)``, event_return's ``salt_events`` in utf8mb4_bin
with an index on ``alter_time``).  The statements are :py:mod:`saltext.eventstore.schema`'s.
"""

from saltext.eventstore.config import positive_int, truthy
from saltext.eventstore.failures import Failed, Invalid
from saltext.eventstore.progress import Progress
from saltext.eventstore.schema import (
    ADD_UNIQUE_KEY,
    COUNT_DUPLICATES,
    CREATE_DUPLICATES_TABLE,
    DELETE_DUPLICATES,
    DROP_DUPLICATES_TABLE,
    FIND_DUPLICATES,
    REINSERT_RETURN,
    RETURNER_TABLES,
    SELECT_DUPLICATES,
    UNIQUE_KEYS,
    StoredReturn,
    first_return,
    migration_plan,
    missing_tables,
    schema_differences,
)


def init_tables(store_):
    """
    Create the tables that are missing; what the runner's ``init`` says.
    Raises :py:class:`Failed` when the database fails.
    """
    try:
        store_.create_tables()
        differences = schema_differences(store_.schema())
    except Exception as exc:  # pylint: disable=broad-except
        raise Failed(f"Could not create the tables in {store_.describe()}: {exc}") from exc
    if differences:
        return "\n".join(
            [
                f"Tables jids and salt_returns exist in {store_.describe()}"
                " but differ from eventstore's layout:",
                *(f"- {difference}" for difference in differences),
                "salt-run eventstore.migrate test=True shows how to upgrade them.",
            ]
        )
    return (
        "Tables jids, salt_returns, eventstore_dead_letters and salt_events are ready in"
        f" {store_.describe()}"
    )


#: The keys of eventstore.status's report.


def remove_duplicate_returns(store_, batch_size, progress):
    """
    Keep one row of each (jid, id) in ``salt_returns`` (:py:func:`first_return`),
    ``batch_size`` pairs per transaction, telling ``progress`` (a
    :py:class:`~saltext.eventstore.progress.Progress`) after each; returns
    how many rows it removed.  MySQL and PostgreSQL.
    """
    sql = store_.sql

    def find(cur):
        cur.execute(sql(DROP_DUPLICATES_TABLE))
        cur.execute(sql(CREATE_DUPLICATES_TABLE))
        cur.execute(sql(FIND_DUPLICATES))
        cur.execute(sql("SELECT COALESCE(MAX(`n`), 0) FROM `eventstore_duplicates`"))
        return cur.fetchone()[0]

    def dedupe(cur, bounds):
        cur.execute(sql(SELECT_DUPLICATES), bounds)
        copies = {}
        for row in map(StoredReturn._make, cur.fetchall()):
            copies.setdefault((row.jid, row.id), []).append(row)
        cur.execute(sql(DELETE_DUPLICATES), bounds)
        deleted = cur.rowcount
        cur.executemany(
            sql(REINSERT_RETURN), [tuple(first_return(rows)) for rows in copies.values()]
        )
        return deleted - len(copies)

    last, removed = store_.run(find), 0
    task = progress.task("migrate: duplicate returns", "(jid, id) pairs done", left=last)
    try:
        for low in range(0, last, batch_size):
            removed += store_.run(lambda cur, low=low: dedupe(cur, (low, low + batch_size)))
            task.advance(min(low + batch_size, last), {"duplicate rows removed": removed})
    finally:
        store_.run(lambda cur: cur.execute(sql(DROP_DUPLICATES_TABLE)))
    return removed


def add_unique_key(store_, batch_size, progress, attempts=3):
    """
    Remove the duplicate returns, then add the unique key on (jid, id); when
    the reactor stored a duplicate in between, do both again.  Returns how
    many rows it removed.
    """
    removed = 0
    for attempt in range(1, attempts + 1):
        removed += remove_duplicate_returns(store_, batch_size, progress)
        try:
            store_.run(lambda cur: cur.execute(store_.sql(ADD_UNIQUE_KEY)))
            return removed
        except Exception as exc:  # pylint: disable=broad-except
            if not store_.is_duplicate(exc) or attempt == attempts:
                raise
    return removed


def migrate(store_, test=False, batch_size=1000, progress=None):
    """
    Upgrade the tables as the runner's ``migrate`` says, telling ``progress``
    (a :py:class:`~saltext.eventstore.progress.Progress`) how far it is
    between its steps and while it removes duplicates; its report, with
    ``retcode: 1`` when it failed.  Raises :py:class:`Invalid` for bad arguments.
    """
    progress = progress or Progress()
    if store_.dialect == "sqlite":
        return (
            f"Nothing to migrate in {store_.describe()}: eventstore makes its SQLite tables itself"
        )
    test = truthy(test)
    try:
        batch_size = positive_int(batch_size, "batch_size")
    except ValueError as exc:
        raise Invalid(exc) from None
    report = {"database": store_.describe(), "steps": []}
    try:
        schema = store_.schema()
        missing = missing_tables(schema, RETURNER_TABLES)
        if missing:
            raise ValueError(
                f"table {', '.join(missing)} missing: salt-run eventstore.init makes it"
            )
        if UNIQUE_KEYS["jids"] not in schema.unique_keys.get("jids", set()):
            raise ValueError("jids has no unique key on (jid), unlike the mysql returner's schema")
        plan = migration_plan(schema)
        if not plan:
            report["result"] = "Nothing to do: the tables have eventstore's layout"
            return report
        # Steps of unequal length (an ALTER TABLE says nothing until it ends): no rate.
        steps = progress.task("migrate", "steps done", left=len(plan), timed=False)
        for done, statement in enumerate(plan):
            steps.advance(done)
            if statement == ADD_UNIQUE_KEY:
                ((pairs, copies),) = store_.select(COUNT_DUPLICATES, ())
                removed = int(copies) - pairs
                if not test:
                    removed = add_unique_key(store_, batch_size, progress)
                report["steps"].append(
                    f"remove {removed} duplicate returns of {pairs} (jid, id) pairs, keeping"
                    " the first stored of each (oldest alter_time, then lowest full_ret)"
                )
            elif not test:
                store_.run(lambda cur, statement=statement: cur.execute(store_.sql(statement)))
            report["steps"].append(store_.sql(statement))
        if test:
            report["result"] = "Would upgrade (test=True: nothing was changed)"
            return report
        left = schema_differences(store_.schema())
        if left:
            raise ValueError("the tables still differ: " + "; ".join(left))
        report["result"] = "Upgraded: the tables have eventstore's layout"
    except Exception as exc:  # pylint: disable=broad-except
        # The retcode key is what salt-run exits with.
        report["retcode"] = 1
        report["result"] = f"Failed: {exc}"
    return report
