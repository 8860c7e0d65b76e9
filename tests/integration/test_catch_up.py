"""
Catch-up rounds: what the master job cache holds and the database lacks is
stored without anyone running backfill.  The job cache is written here by
Salt's own local_cache returner, as the master writes it.
"""

import fcntl
import logging
import os
import threading

import pytest
import salt.config
import salt.loader
import salt.utils.jid
from runnerlib import load_runner, new_event, ret_event

JIDS = [f"2026112612000000000{n}" for n in range(10)]


@pytest.fixture
def master_opts(tmp_path):
    opts = salt.config.master_config(None)
    opts.update(
        cachedir=str(tmp_path / "cache"),
        # Every return in the job cache is old enough to catch up.
        eventstore={"job_cache_wait": 1, "catch_up_after": 0},
    )
    return opts


@pytest.fixture
def job_cache(master_opts):
    """Salt's local_cache returner on the master's cachedir."""
    returners = salt.loader.returners(master_opts, {})

    def run(jid, fun="test.echo", minions=("web1",), returned=None):
        returners["local_cache.prep_jid"](passed_jid=jid)  # as the master does
        load = {
            "jid": jid,
            "fun": fun,
            "arg": [jid],
            "tgt": "*",
            "tgt_type": "glob",
            "user": "root",
        }
        returners["local_cache.save_load"](jid, load, minions=list(minions))
        for minion in minions if returned is None else returned:
            _, data = ret_event(minion=minion, jid=jid, fun=fun, ret=f"{jid} from {minion}")
            returners["local_cache.returner"](data)

    return run


@pytest.fixture
def es(master_opts):
    runner = load_runner(master_opts)
    runner.init()
    return runner


def stored(es):
    return sorted(es._store().select("SELECT `jid`, `id` FROM `salt_returns`", ()))


def loads(es):
    return sorted(jid for (jid,) in es._store().select("SELECT `jid` FROM `jids`", ()))


def test_a_round_stores_the_returns_and_loads_the_database_lacks(es, job_cache):
    job_cache(JIDS[0], minions=("web1", "web2"))
    report = es.catch_up()
    assert stored(es) == [(JIDS[0], "web1"), (JIDS[0], "web2")]
    assert loads(es) == [JIDS[0]]
    assert report["last_round"]["stored"]["returns"] == 2
    assert report["last_round_that_stored"]["stored"]["jobs"] == [JIDS[0]]


def test_a_round_stores_only_what_is_missing(es, job_cache):
    job_cache(JIDS[0], minions=("web1", "web2"))
    tag, data = ret_event(minion="web1", jid=JIDS[0], fun="test.echo")
    assert es.store(*new_event(jid=JIDS[0], fun="test.echo", minions=("web1", "web2"))) == "stored"
    assert es.store(tag, data) == "stored"
    report = es.catch_up()
    assert report["last_round"]["stored"]["returns"] == 1
    assert report["last_round"]["stored"]["loads"] == 0
    assert stored(es) == [(JIDS[0], "web1"), (JIDS[0], "web2")]


def test_returns_younger_than_catch_up_after_are_left_to_the_live_path(master_opts, job_cache):
    master_opts["eventstore"]["catch_up_after"] = 3600
    es = load_runner(master_opts)
    job_cache(JIDS[0])
    assert es.catch_up()["last_round"]["jobs changed"] == 0
    assert stored(es) == []


def changed_at(es, jid, when):
    """Make the job's folder look last changed by the master at ``when`` (epoch seconds)."""
    folder = salt.utils.jid.jid_dir(jid, os.path.join(es.__opts__["cachedir"], "jobs"), "sha256")
    os.utime(folder, (when, when))


def unchanged_since_long_ago(es, jid):
    changed_at(es, jid, 1)


def test_a_round_looks_only_at_jobs_changed_since_the_last_one(es, job_cache):
    job_cache(JIDS[0])
    job_cache(JIDS[1])
    es.catch_up()
    unchanged_since_long_ago(es, JIDS[0])
    unchanged_since_long_ago(es, JIDS[1])
    assert es.catch_up()["last_round"]["jobs changed"] == 0


def test_the_first_round_ever_looks_at_the_whole_job_cache(es, job_cache):
    job_cache(JIDS[0])
    unchanged_since_long_ago(es, JIDS[0])
    assert es.catch_up()["last_round"]["stored"]["returns"] == 1


def test_a_return_added_to_a_job_after_a_round_is_caught_up_by_the_next(es, job_cache):
    job_cache(JIDS[0], minions=("web1", "web2"), returned=("web1",))
    es.catch_up()
    job_cache(JIDS[0], minions=("web1", "web2"), returned=("web2",))
    report = es.catch_up()
    assert report["last_round"]["stored"]["returns"] == 1
    assert stored(es) == [(JIDS[0], "web1"), (JIDS[0], "web2")]


def test_a_round_looks_at_catch_up_max_jobs_jobs_and_the_next_goes_on(master_opts, job_cache):
    master_opts["eventstore"]["catch_up_max_jobs"] = 3
    es = load_runner(master_opts)
    for n, jid in enumerate(JIDS[:5]):
        job_cache(jid)
        changed_at(es, jid, 1000 + n)  # the master wrote them a second apart
    first = es.catch_up()["last_round"]
    assert (first["jobs changed"], first["more to do"]) == (3, True)
    second = es.catch_up()["last_round"]
    assert second["more to do"] is False
    assert loads(es) == JIDS[:5]


def test_the_next_round_is_due_soon_when_a_round_had_more_to_do(master_opts, job_cache):
    master_opts["eventstore"].update(catch_up_max_jobs=1, catch_up_interval=600)
    es = load_runner(master_opts)
    job_cache(JIDS[0])
    job_cache(JIDS[1])
    unchanged_since_long_ago(es, JIDS[0])
    assert es.catch_up()["next_round_in"] <= es.lib.catchup.CATCH_UP_PAUSE
    assert es.catch_up()["next_round_in"] > 500


def test_a_round_that_is_not_due_does_not_run(master_opts):
    master_opts["eventstore"]["catch_up_interval"] = 600
    es = load_runner(master_opts)
    assert es.catch_up()["ran"] is True
    assert es.catch_up(force=False)["ran"] is False


def test_the_masters_runner_jobs_and_ignored_functions_are_left_out(es, job_cache):
    job_cache(JIDS[0], fun="runner.eventstore.store", minions=("master_master",))
    job_cache(JIDS[1], fun="saltutil.find_job")
    report = es.catch_up()["last_round"]
    assert (report["jobs changed"], report["jobs lacking rows"]) == (2, 0)
    assert (stored(es), loads(es)) == ([], [])


def test_a_round_writes_the_spool_back(es):
    writer = es._runtime().writer
    tag, data = ret_event(jid=JIDS[0])
    writer.spool.put(es.lib.rows.return_row(JIDS[0], "web1", data))
    assert es.catch_up()["last_round"]["written back from the spool"] == 1
    assert stored(es) == [(JIDS[0], "web1")]


def test_one_log_line_per_round_that_stored_naming_its_jobs(es, job_cache, caplog):
    job_cache(JIDS[0])
    job_cache(JIDS[1])
    with caplog.at_level(logging.INFO):
        es.catch_up()
        es.catch_up()
    lines = [r.getMessage() for r in caplog.records if "catch-up stored" in r.getMessage()]
    assert len(lines) == 1
    assert "2 returns and 2 job loads" in lines[0] and JIDS[0] in lines[0] and JIDS[1] in lines[0]


def test_status_shows_the_last_round_and_what_it_stored(es, job_cache):
    job_cache(JIDS[0])
    es.catch_up()
    es.catch_up()
    shown = es.status()["catch_up"]
    assert shown["last_round"]["stored"]["returns"] == 0
    assert shown["last_round_that_stored"]["stored"]["jobs"] == [JIDS[0]]


def test_the_state_survives_a_reload_of_the_module(es, job_cache, master_opts):
    job_cache(JIDS[0])
    es.catch_up()
    unchanged_since_long_ago(es, JIDS[0])
    reloaded = load_runner(master_opts)
    assert reloaded.catch_up()["last_round"]["jobs changed"] == 0
    assert reloaded.status()["catch_up"]["last_round_that_stored"]["stored"]["jobs"] == [JIDS[0]]


def test_no_round_runs_while_another_process_runs_one(es, job_cache):
    job_cache(JIDS[0])
    settings = es.lib.config.catch_up_settings(es.__opts__)
    os.makedirs(os.path.dirname(settings.lock_path), exist_ok=True)
    with open(settings.lock_path, "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX)  # flock: per open file, so this process counts as another
        assert es.catch_up()["ran"] is False
    assert stored(es) == []


@pytest.fixture
def outage(master_opts, tmp_path):
    """A SQLite database whose folder is a plain file until the outage ends."""
    blocker = tmp_path / "db"
    blocker.write_text("not a folder")
    master_opts["eventstore"]["sqlite_path"] = str(blocker / "returns.sqlite3")

    def end():
        blocker.unlink()
        blocker.mkdir()

    return end


def test_a_round_while_the_database_is_down_stores_nothing_and_the_next_one_does(
    master_opts, job_cache, outage
):
    es = load_runner(master_opts)
    job_cache(JIDS[0])
    failed = es.catch_up()
    assert failed["error"] and failed["last_round"] is None
    assert es._runtime().writer.spool.names() == []  # not spooled again each round
    outage()
    es._runtime().writer._came_up()
    assert es.catch_up()["last_round"]["stored"]["returns"] == 1


def test_catch_up_is_off_when_turned_off(master_opts, job_cache):
    master_opts["eventstore"]["catch_up"] = False
    es = load_runner(master_opts)
    job_cache(JIDS[0])
    assert es.catch_up()["enabled"] is False
    assert es.status()["catch_up"]["enabled"] is False


def test_catch_up_is_off_with_another_job_cache(master_opts):
    master_opts["master_job_cache"] = "mysql"
    assert load_runner(master_opts).config.catch_up_settings(master_opts).enabled is False


def test_one_catch_up_thread_per_process_whatever_copy_of_the_module_starts_it(
    master_opts, monkeypatch
):
    release = threading.Event()
    copies = [load_runner(master_opts) for _ in range(3)]
    for copy in copies:
        monkeypatch.setattr(
            copy.lib.catchup, "catch_up_forever", lambda opts, get_runtime: release.wait()
        )
    monkeypatch.delitem(
        __import__("sys").modules, copies[0].lib.catchup.PROCESS_WIDE, raising=False
    )
    before = set(threading.enumerate())
    try:
        for copy in copies:  # a reaction in each copy the reactor's loader made
            copy.lib.catchup.start_catch_up_thread(copy.__opts__, copy._runtime)
        started = [
            t for t in set(threading.enumerate()) - before if t.name == "eventstore-catch-up"
        ]
        assert len(started) == 1
    finally:
        release.set()


def test_a_round_does_not_part_jobs_the_master_changed_at_the_same_moment(master_opts, job_cache):
    master_opts["eventstore"]["catch_up_max_jobs"] = 2
    es = load_runner(master_opts)
    for n, jid in enumerate(JIDS[:3]):
        job_cache(jid)
        changed_at(es, jid, 1000 + min(n, 1))  # the last two at one moment
    assert es.catch_up()["last_round"]["jobs changed"] == 1
    assert es.catch_up()["last_round"]["jobs changed"] == 2
    assert loads(es) == JIDS[:3]


def test_status_says_when_the_spool_cannot_be_written(es, tmp_path):
    spool = es._runtime().writer.spool.path
    os.makedirs(os.path.dirname(spool), exist_ok=True)
    with open(spool, "w") as blocker:
        blocker.write("a file where the spool folder should be")
    report = es.status()
    assert report["healthy"] is False
    assert any("spool cannot be written" in problem for problem in report["problems"])


def test_status_of_a_master_that_never_spooled_leaves_no_spool_folder(es):
    assert es.status()["healthy"] is True
    assert not os.path.exists(es._runtime().writer.spool.path)
