"""
eventstore.prune: deletes (or archives) what is older than a cutoff, in
batches, and never anything younger; on both backends.
"""

import datetime

import pytest
from runnerlib import as_runner_job, count, fake_clock, new_event, ret_event

CUTOFF = "2020-11-01 00:00:00"
BEFORE, AT, AFTER = "2020-10-31 23:59:59", "2020-11-01 00:00:00", "2020-11-01 00:00:01"
OLD_JID = "20201031235959999999"
CUTOFF_JID, NEW_JID = "20201101000000000000", "20201101000000000001"


def put_return(es, minion, alter_time, jid=OLD_JID):
    """A salt_returns row as the store writes it, stored at ``alter_time`` (UTC)."""
    _, data = ret_event(minion=minion, jid=jid)
    row = es.lib.rows.return_row(jid, minion, data)
    statement = es._store().sql(
        "INSERT INTO `salt_returns` (`fun`, `jid`, `return`, `id`, `success`, `full_ret`,"
        " `alter_time`) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    )
    es._store().run(lambda cur: cur.execute(statement, (*row, alter_time)))


def minions(es, table="salt_returns"):
    rows = es._store().select(f"SELECT `id` FROM `{table}` ORDER BY `id`", ())
    return [minion for (minion,) in rows]


def stored_jids(es, table="jids"):
    return [jid for (jid,) in es._store().select(f"SELECT `jid` FROM `{table}` ORDER BY `jid`", ())]


def test_prune_deletes_returns_stored_before_the_cutoff_and_keeps_the_rest(es):
    for minion, stored in (("before", BEFORE), ("at", AT), ("after", AFTER)):
        put_return(es, minion, stored)
    es.prune(before=CUTOFF)
    assert minions(es) == ["after", "at"]


def test_prune_decides_job_loads_by_the_time_in_their_jid(es):
    for jid in (OLD_JID, CUTOFF_JID, NEW_JID):
        es.store(*new_event(jid=jid))
    es.prune(before=CUTOFF)
    assert stored_jids(es) == [CUTOFF_JID, NEW_JID]


def test_prune_keeps_a_return_of_an_old_job_stored_after_the_cutoff(es):
    put_return(es, "late", AFTER, jid="20200101000000000000")
    es.prune(before=CUTOFF)
    assert minions(es) == ["late"]


def test_prune_deletes_a_return_stored_before_the_cutoff_of_a_job_started_just_after(es):
    # The database's clock said "stored before the cutoff"; the jid (another clock) disagrees.
    put_return(es, "skewed", BEFORE, jid=NEW_JID)
    es.prune(before=CUTOFF)
    assert minions(es) == []


def test_prune_by_age_in_days_keeps_what_is_younger(es):
    now = datetime.datetime.now(datetime.timezone.utc)
    for minion, age in (("old", 31), ("young", 29)):
        put_return(es, minion, (now - datetime.timedelta(days=age)).strftime("%Y-%m-%d %H:%M:%S"))
    assert es.prune(days=30)["salt_returns"] == 1
    assert minions(es) == ["young"]


def test_prune_reports_what_it_deleted(es):
    es.store(*new_event(jid=OLD_JID))
    put_return(es, "a", BEFORE)
    put_return(es, "b", BEFORE)
    assert es.prune(before=CUTOFF) == {
        "cutoff": "2020-11-01T00:00:00+00:00",
        "action": "deleted",
        "jids": 1,
        "salt_returns": 2,
        "salt_events": 0,
    }


def test_prune_deletes_in_transactions_of_at_most_batch_size_rows(es):
    for n in range(7):
        put_return(es, f"m{n}", BEFORE, jid=f"2020010100000000000{n}")
    put_return(es, "young", AFTER)
    store = es._store()
    run, sizes = store.run, []

    def returns():
        def work(cur):
            cur.execute(store.sql("SELECT COUNT(*) FROM `salt_returns`"))
            return cur.fetchone()[0]

        return run(work)

    def counting_run(work):
        before = returns()
        result = run(work)
        if returns() != before:
            sizes.append(before - returns())
        return result

    store.run = counting_run
    es.prune(before=CUTOFF, batch_size=2)
    assert sizes == [2, 2, 2, 1]
    assert minions(es) == ["young"]


def test_prune_dry_run_counts_and_deletes_nothing(es):
    es.store(*new_event(jid=OLD_JID))
    put_return(es, "old", BEFORE)
    put_return(es, "young", AFTER)
    report = es.prune(before=CUTOFF, dry_run=True)
    assert (report["action"], report["jids"], report["salt_returns"]) == ("would delete", 1, 1)
    assert (count(es, "jids"), count(es)) == (1, 2)


def test_prune_archive_moves_old_rows_to_the_archive_tables(es):
    es.store(*new_event(jid=OLD_JID))
    es.store(*new_event(jid=NEW_JID))
    put_return(es, "old", BEFORE)
    put_return(es, "young", AFTER)
    assert es.prune(before=CUTOFF, archive=True)["action"] == "archived"
    assert (minions(es), minions(es, "salt_returns_archive")) == (["young"], ["old"])
    assert (stored_jids(es), stored_jids(es, "jids_archive")) == ([NEW_JID], [OLD_JID])


def test_prune_archive_tables_have_the_columns_of_the_originals(es):
    es.prune(before=CUTOFF, archive=True)
    for table in ("jids", "salt_returns"):
        assert columns(es, f"{table}_archive") == columns(es, table)


def test_prune_archive_keeps_one_copy_of_a_return_archived_twice(es):
    put_return(es, "web1", BEFORE)
    es.prune(before=CUTOFF, archive=True)
    put_return(es, "web1", BEFORE)  # the same return, stored again after the first prune
    es.prune(before=CUTOFF, archive=True)
    assert (minions(es), minions(es, "salt_returns_archive")) == ([], ["web1"])


def columns(es, table):
    def work(cur):
        cur.execute(es._store().sql(f"SELECT * FROM `{table}` WHERE 1 = 0"))
        return [column[0] for column in cur.description]

    return es._store().run(work)


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({}, "prune has no default age"),
        ({"days": 0}, "the age must be above 0"),
        ({"hours": -3}, "the age must be above 0"),
        ({"days": "many"}, "give numbers"),
        ({"days": 30, "before": CUTOFF}, "not both"),
        ({"before": "2999-01-01"}, "is in the future"),
        ({"before": "someday"}, "before: 'someday' is not a time"),
    ],
)
def test_prune_refuses_without_a_sensible_age_and_deletes_nothing(es, kwargs, reason):
    put_return(es, "old", BEFORE)
    refused = es.prune(**kwargs)
    assert reason in refused["Error"]
    assert refused["retcode"] == es.__context__["retcode"] == 1
    assert count(es) == 1


def put_old_returns(es, n):
    """``n`` returns of as many jobs, stored before the cutoff, in one transaction."""
    rows = []
    for i in range(n):
        jid = f"2020010100{i:010d}"
        _, data = ret_event(minion="web1", jid=jid)
        rows.append((*es.lib.rows.return_row(jid, "web1", data), BEFORE))
    statement = es._store().sql(
        "INSERT INTO `salt_returns` (`fun`, `jid`, `return`, `id`, `success`, `full_ret`,"
        " `alter_time`) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    )
    es._store().run(lambda cur: cur.executemany(statement, rows))


def slow_prune_reports(es, **kwargs):
    """
    A prune of 300 old returns, 10 a batch, as a salt-run job on a clock
    on which each reading takes a second: its result and progress reports.
    """
    put_old_returns(es, 300)
    job = as_runner_job(es)
    fake_clock(es).tick = 1.0
    result = es.prune(before=CUTOFF, batch_size=10, progress=5, **kwargs)
    return result, [r for r in job.progress() if r["operation"] == "prune salt_returns"]


def test_a_long_prune_reports_rows_deleted_and_left_as_it_goes(es):
    _, reports = slow_prune_reports(es)
    done = [report["done"] for report in reports]
    assert len(done) >= 3 and done == sorted(set(done))
    assert all(report["done"] + report["left"] == 300 for report in reports)
    assert "rows deleted" in reports[0]["message"] and "rows/s" in reports[0]["message"]


def test_a_long_prune_ends_with_the_summary_it_gave_without_reports(es):
    result, _ = slow_prune_reports(es)
    assert result == {
        "cutoff": "2020-11-01T00:00:00+00:00",
        "action": "deleted",
        "jids": 0,
        "salt_returns": 300,
        "salt_events": 0,
    }


def test_a_long_prune_with_archive_reports_rows_archived(es):
    result, reports = slow_prune_reports(es, archive=True)
    assert reports and all("rows archived" in report["message"] for report in reports)
    assert (result["action"], result["salt_returns"], count(es, "salt_returns_archive")) == (
        "archived",
        300,
        300,
    )
