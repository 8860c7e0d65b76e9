"""
While the database is unavailable, rows go to a spool on disk and come back
without anyone acting: here the SQLite file cannot be opened (its folder is
missing), which the runner sees as the database being down.
"""

import logging
import os
import stat

import pytest
from runnerlib import JID, as_runner_job, fake_clock, load_runner, ret_event


@pytest.fixture
def outage(tmp_path):
    """A SQLite path whose folder is a plain file until the outage ends."""
    blocker = tmp_path / "db"
    blocker.write_text("not a folder")

    class Outage:
        path = str(blocker / "returns.sqlite3")

        @staticmethod
        def end():
            blocker.unlink()
            blocker.mkdir()

    return Outage


@pytest.fixture
def es(tmp_path, outage):
    return load_runner(
        {
            "cachedir": str(tmp_path),
            "eventstore": {"verify_returns": False, "sqlite_path": outage.path},
        }
    )


def spooled(es):
    return es._runtime().writer.spool.names()


def test_a_return_is_spooled_while_the_database_is_down(es):
    assert es.store(*ret_event()) == "spooled"
    assert len(spooled(es)) == 1


def test_the_spool_is_in_the_cachedir_and_private(es, tmp_path):
    es.store(*ret_event())
    folder = tmp_path / "eventstore_spool"
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    (name,) = os.listdir(folder)
    assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600


def tries_of(es, store_class):
    """The list a connect attempt to the database appends to, from now on."""
    tries = []
    connect = store_class.connect
    store_class.connect = lambda self: tries.append(1) or connect(self)
    return tries


def test_one_warning_per_outage_not_per_failed_try(es, caplog):
    es._runtime().writer.first_pause = 0  # every store tries the database again
    tries = tries_of(es, es.lib.store_sqlite.SQLiteStore)
    with caplog.at_level(logging.WARNING):
        for minion in ("a", "b", "c", "d"):
            assert es.store(*ret_event(minion=minion)) == "spooled"
    assert len(tries) == 4
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1


def test_the_warning_carries_no_return_data(es, caplog):
    with caplog.at_level(logging.WARNING):
        es.store(*ret_event(ret="secret-token-value"))
    assert "secret-token-value" not in caplog.text


def test_after_a_failure_the_database_is_left_alone_for_a_pause(es):
    es._runtime().writer.first_pause = 3600
    es.store(*ret_event(minion="first"))
    tries = tries_of(es, es.lib.store_sqlite.SQLiteStore)
    for minion in ("a", "b", "c"):
        assert es.store(*ret_event(minion=minion)) == "spooled"
    assert tries == []


def test_the_next_store_after_the_pause_writes_the_spool_back(es, outage):
    es._runtime().writer.first_pause = 0  # the pause is over at once
    es.store(*ret_event(minion="during-1"))
    es.store(*ret_event(minion="during-2"))
    outage.end()
    assert es.store(*ret_event(minion="after")) == "stored"
    assert sorted(es.query(jid=JID)) == ["after", "during-1", "during-2"]
    assert spooled(es) == []


def test_replay_writes_the_spool_back_at_once(es, outage):
    for n in range(3):
        es.store(*ret_event(minion=f"m{n}"))
    outage.end()
    assert es.replay()["written back"] == 3
    assert sorted(es.query(jid=JID)) == ["m0", "m1", "m2"]


def test_replay_more_than_a_batch(es, outage):
    for n in range(es.lib.writer.REPLAY_BATCH + 5):
        es.store(*ret_event(minion=f"m{n}"))
    outage.end()
    assert es.replay()["written back"] == es.lib.writer.REPLAY_BATCH + 5


def test_replay_while_still_down_leaves_the_spool_and_exits_non_zero(es):
    es.store(*ret_event())
    result = es.replay()
    assert result["left in the spool"] == 1
    assert result["retcode"] == 1  # what salt-run exits with


def test_a_return_spooled_twice_is_stored_once(es, outage):
    tag, data = ret_event()
    es.store(tag, data)
    es.store(tag, data)
    outage.end()
    es.replay()
    assert es.query(jid=JID) == {"web1": True}
    assert len(es._store().select("SELECT * FROM salt_returns", ())) == 1


@pytest.mark.parametrize("step", ["read", "insert"])
def test_two_processes_replaying_one_spool_store_each_row_once(es, outage, step):
    for n in range(20):
        es.store(*ret_event(minion=f"m{n}"))
    outage.end()
    other = load_runner(dict(es.__opts__))  # salt-run beside the reactor
    writer = other._runtime().writer
    # The other process lists the spool, then, just before it reads (or
    # inserts) those rows, this one writes the whole spool back.
    target = writer.spool if step == "read" else writer
    method = {"read": "read", "insert": "_insert_rows"}[step]
    original = getattr(target, method)
    interleaved = []

    def replay_here_first(*args, **kwargs):
        if not interleaved:
            interleaved.append(es.replay()["written back"])
        return original(*args, **kwargs)

    setattr(target, method, replay_here_first)
    other.replay()
    assert interleaved == [20]
    assert len(es._store().select("SELECT * FROM salt_returns", ())) == 20
    assert spooled(es) == []


def test_a_job_load_is_spooled_too(es, outage):
    from runnerlib import new_event

    assert es.store(*new_event()) == "spooled"
    outage.end()
    es.replay()
    assert es._store().select("SELECT jid FROM jids", ()) == [(JID,)]


def test_a_batch_made_while_the_database_is_down_is_spooled_and_written_back(es, outage):
    from runnerlib import new_event

    batch = [new_event(), *(ret_event(minion=f"m{n}") for n in range(10))]
    counts = es.store_events([{"tag": tag, "data": data} for tag, data in batch])
    assert counts["spooled"] == 11
    outage.end()
    assert es.replay()["written back"] == 11
    assert sorted(es.query(jid=JID)) == [f"m{n}" for n in range(10)]


def test_status_counts_the_rows_waiting_in_the_spool(es):
    es.store(*ret_event(minion="a"))
    es.store(*ret_event(minion="b"))
    assert es.status()["spool"]["rows waiting"] == 2


def test_a_long_replay_reports_rows_written_back_and_left_then_its_summary(es, outage):
    es.store_events([dict(zip(("tag", "data"), ret_event(minion=f"m{n}"))) for n in range(450)])
    outage.end()
    job = as_runner_job(es)
    fake_clock(es).tick = 1.0  # each reading of the clock takes a second
    result = es.replay(progress=2)
    reports = job.progress()
    done = [report["done"] for report in reports]
    assert len(done) >= 2 and done == sorted(set(done))
    assert all(report["done"] + report["left"] == 450 for report in reports)
    assert result == {
        "written back": 450,
        "left in the spool": 0,
        "spool": es._runtime().writer.spool.path,
        "dead letters on disk": 0,
        "retcode": 0,
    }
