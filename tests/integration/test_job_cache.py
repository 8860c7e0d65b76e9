"""
Returns checked against, completed from and backfilled out of the master job
cache, written here by Salt's own local_cache returner as the master writes it.
"""

import json

import pytest
import salt.config
import salt.loader
from runnerlib import JID, as_runner_job, fake_clock, load_runner, new_event, ret_event

#: Long enough that a runner that waits never gives up during a test: each
#: test says when the master writes, on a clock of its own.
LONG_WAIT = 3600


@pytest.fixture
def master_opts(tmp_path):
    opts = salt.config.master_config(None)
    opts.update(cachedir=str(tmp_path / "cache"), eventstore={"job_cache_wait": LONG_WAIT})
    return opts


@pytest.fixture
def job_cache(master_opts):
    """Salt's local_cache returner on the master's cachedir."""
    returners = salt.loader.returners(master_opts, {})

    class JobCache:
        local_cache = returners

        @staticmethod
        def publish(jid=JID, fun="test.ping", arg=(), minions=("web1",)):
            load = {
                "jid": jid,
                "fun": fun,
                "arg": list(arg),
                "tgt": "*",
                "tgt_type": "glob",
                "user": "root",
            }
            returners["local_cache.save_load"](jid, load, minions=list(minions))

        @staticmethod
        def ret(tag_data):
            _, data = tag_data
            returners["local_cache.returner"](dict(data))

    return JobCache


def runner(master_opts):
    """The runner on ``master_opts``, waiting on a fake clock: no test waits for real."""
    es = load_runner(master_opts)
    fake_clock(es)
    return es


@pytest.fixture
def es(master_opts):
    es = runner(master_opts)
    es.init()
    return es


def while_the_master_writes(es, store, write, after=1.0):
    """
    ``store()``'s result when the master writes its job cache (``write()``)
    once the runner has looked there in vain and waited ``after`` seconds
    more (on the runner's own fake clock): the master writes it just after
    it fires the event.
    """
    clock = fake_clock(es)
    started = clock.now
    job_cache = es._runtime().job_cache
    written = []

    def looking(read):
        def look(*args, **kwargs):
            found = read(*args, **kwargs)
            if not found and not written and clock.now - started >= after:
                written.append(write())
            return found

        return look

    for name in ("ready", "ret", "load"):
        setattr(job_cache, name, looking(getattr(job_cache, name)))
    result = store()
    assert written, "the runner never looked in the job cache"
    return result


def test_verification_is_on_by_default_with_local_cache(es):
    assert es._runtime().config.verify_returns is True


def test_a_return_the_job_cache_holds_is_stored(es, job_cache):
    job_cache.publish()
    event = ret_event(ret="genuine")
    job_cache.ret(event)
    assert es.store(*event) == "stored"


def test_a_return_the_job_cache_lacks_is_refused_as_forged(es, job_cache, caplog):
    job_cache.publish()
    tag, data = ret_event(minion="victim", ret="forged")
    assert es.store(tag, data) == "refused"
    assert tag in caplog.text and "forged" in caplog.text
    assert es.query(jid=JID) == {}


def test_a_return_for_a_job_never_published_is_refused(es):
    assert es.store(*ret_event(jid="20990101000000000000")) == "refused"


def test_the_job_caches_copy_is_stored_not_the_events(es, job_cache):
    job_cache.publish()
    job_cache.ret(ret_event(ret="genuine", success=True))
    tag, data = ret_event(ret="tampered", success=False)
    es.store(tag, data)
    assert es.query(jid=JID) == {"web1": "genuine"}
    assert es.query()[0]["success"] is True


def test_an_event_naming_another_function_than_the_job_is_refused(es, job_cache):
    job_cache.publish(fun="test.ping")
    job_cache.ret(ret_event(fun="test.ping"))
    assert es.store(*ret_event(fun="cmd.run")) == "refused"


def test_a_return_written_to_the_cache_just_after_its_event_is_waited_for(es, job_cache):
    job_cache.publish()
    event = ret_event(ret="late")
    verdict = while_the_master_writes(es, lambda: es.store(*event), lambda: job_cache.ret(event))
    assert verdict == "stored"
    assert es.query(jid=JID) == {"web1": "late"}


def test_a_scheduled_jobs_return_is_waited_for_though_its_load_comes_after_it(es, job_cache):
    # A job the minion started itself: the master makes the job's folder,
    # fires the return, and only then writes the load and the return.
    local_cache = job_cache.local_cache
    local_cache["local_cache.prep_jid"](False, passed_jid=JID)
    tag, data = ret_event(ret="scheduled")
    data["schedule"] = "every-minute"

    def master_writes_the_job_cache():
        local_cache["local_cache.save_load"](JID, dict(data))
        local_cache["local_cache.returner"](dict(data))

    assert (
        while_the_master_writes(es, lambda: es.store(tag, data), master_writes_the_job_cache)
        == "stored"
    )
    assert es.query(jid=JID) == {"web1": "scheduled"}


def test_a_scheduled_jobs_load_is_stored_with_its_return_and_without_it(es, job_cache):
    local_cache = job_cache.local_cache
    tag, data = ret_event(ret="scheduled")
    data.update(schedule="every-minute", fun_args=["scheduled"])
    local_cache["local_cache.prep_jid"](False, passed_jid=JID)
    local_cache["local_cache.save_load"](JID, dict(data))
    local_cache["local_cache.returner"](dict(data))
    assert es.store(tag, data) == "stored"
    (load,) = es._store().select("SELECT `load` FROM jids WHERE jid = %s", (JID,))
    load = json.loads(load[0])
    assert (load["fun"], load["schedule"], load["id"]) == ("test.ping", "every-minute", "web1")
    assert "return" not in load


def waits_for(es, event):
    """The runner's verdict on ``event`` and how many seconds it waited for the job cache."""
    clock = fake_clock(es)
    started = clock.now
    verdict = es.store(*event)
    return verdict, clock.now - started


def test_a_return_from_a_minion_the_job_did_not_target_is_not_waited_for_long(es, job_cache):
    job_cache.publish(minions=("web1",))
    verdict, waited = waits_for(es, ret_event(minion="victim"))
    assert verdict == "refused" and waited == pytest.approx(es.lib.intake.UNEXPECTED_WAIT)


def test_a_late_return_from_a_minion_behind_a_syndic_is_waited_for(es, job_cache):
    job_cache.publish(minions=("web1",))
    job_cache.local_cache["local_cache.save_minions"](JID, ["far1"], syndic_id="syndic1")
    event = ret_event(minion="far1", ret="via the syndic")
    # Later than UNEXPECTED_WAIT, the wait for a minion the job did not expect.
    verdict = while_the_master_writes(
        es,
        lambda: es.store(*event),
        lambda: job_cache.ret(event),
        after=10 * es.lib.intake.UNEXPECTED_WAIT,
    )
    assert verdict == "stored"


def test_a_forged_return_waited_for_in_vain_once_is_not_waited_for_long_again(es, job_cache):
    job_cache.publish(minions=("web1", "web2"))  # web2 has not returned
    first = waits_for(es, ret_event(minion="web2", ret="forged"))
    again = waits_for(es, ret_event(minion="web2", ret="forged again"))
    assert first == ("refused", pytest.approx(LONG_WAIT))
    assert again == ("refused", pytest.approx(es.lib.intake.UNEXPECTED_WAIT))


def test_a_damaged_return_file_in_the_job_cache_is_refused_with_the_reason(
    es, job_cache, master_opts, caplog
):
    import salt.utils.jid

    job_cache.publish()
    job_cache.ret(ret_event())
    folder = salt.utils.jid.jid_dir(JID, f"{master_opts['cachedir']}/jobs", "sha256")
    with open(f"{folder}/web1/return.p", "wb") as handle:
        handle.write(b"\xc1 not msgpack")
    assert es.store(*ret_event()) == "refused"
    assert "return.p cannot be read" in caplog.text


def test_the_events_outputter_is_kept_when_the_job_cache_has_none(es, job_cache):
    job_cache.publish(fun="state.apply")
    job_cache.ret(ret_event(fun="state.apply", ret={"state_|-a_|-a_|-run": {"result": True}}))
    es.store(*ret_event(fun="state.apply", ret={}, out="highstate"))
    assert es.query(jid=JID)["outputter"] == "highstate"


def test_a_trimmed_return_is_stored_whole_from_the_job_cache(es, job_cache):
    job_cache.publish(fun="cmd.run")
    whole = "y" * 2_000_000
    job_cache.ret(ret_event(fun="cmd.run", ret=whole))
    es.store(*ret_event(fun="cmd.run", ret="VALUE_TRIMMED"))
    assert es.query(jid=JID) == {"web1": whole}


def test_without_verification_a_trimmed_return_is_still_completed(master_opts, job_cache):
    master_opts["eventstore"]["verify_returns"] = False
    es = runner(master_opts)
    job_cache.publish()
    job_cache.ret(ret_event(ret={"stdout": "z" * 10, "stderr": ""}))
    es.store(*ret_event(ret={"stdout": "VALUE_TRIMMED", "stderr": ""}))
    assert es.query(jid=JID) == {"web1": {"stdout": "z" * 10, "stderr": ""}}


def test_without_verification_a_trimmed_return_missing_from_the_cache_is_a_dead_letter(
    master_opts,
):
    master_opts["eventstore"]["verify_returns"] = False
    es = runner(master_opts)
    assert es.store(*ret_event(ret="VALUE_TRIMMED")) == "dead-lettered"
    (shown,) = es.query(jid=JID).values()
    assert "trimmed" in shown


def test_the_job_load_is_stored_from_the_job_cache(es, job_cache):
    job_cache.publish(fun="cmd.run", arg=["uptime"], minions=("web1", "web2"))
    tag, data = new_event(fun="cmd.run", user="forged-user")
    assert es.store(tag, data) == "stored"
    (load,) = es._store().select("SELECT `load` FROM jids", ())
    assert '"user": "root"' in load[0] and '"minions": ["web1", "web2"]' in load[0]


def stored_loads(es):
    return [json.loads(load) for (load,) in es._store().select("SELECT `load` FROM jids", ())]


def test_a_published_jobs_load_is_stored_with_its_first_return(es, job_cache):
    job_cache.publish(fun="cmd.run", arg=["uptime"], minions=("web1", "web2"))
    event = ret_event(fun="cmd.run", ret="up 3 days")
    job_cache.ret(event)
    assert es.store(*event) == "stored"
    (load,) = stored_loads(es)
    assert (load["jid"], load["fun"], load["arg"], load["user"], load["minions"]) == (
        JID,
        "cmd.run",
        ["uptime"],
        "root",
        ["web1", "web2"],
    )


def test_a_jobs_load_is_written_with_its_first_return_only(es, job_cache):
    job_cache.publish(minions=("web1", "web2"))
    events = [ret_event(minion=minion) for minion in ("web1", "web2")]
    for event in events:
        job_cache.ret(event)
    written = [es.store_events([dict(zip(("tag", "data"), event))]) for event in events]
    assert [(counts["stored"], counts["duplicate"]) for counts in written] == [(2, 0), (1, 0)]
    assert len(stored_loads(es)) == 1


def test_the_verdict_is_the_returns_own_not_its_jobs_load(es, job_cache, master_opts):
    job_cache.publish()
    event = ret_event()
    job_cache.ret(event)
    assert es.store(*event) == "stored"
    es._store().run(lambda cur: cur.execute("DELETE FROM jids"))
    # Another process (a master restarted) meets the same return again: its load is new.
    assert load_runner(master_opts).store(*event) == "duplicate"
    assert len(stored_loads(es)) == 1


def test_an_ignored_return_stores_no_load(master_opts, job_cache):
    master_opts["eventstore"]["ignore_funs"] = ["test.*"]
    es = load_runner(master_opts)
    es.init()
    job_cache.publish()
    event = ret_event()
    job_cache.ret(event)
    assert es.store(*event) == "ignored"
    assert stored_loads(es) == []


def test_a_job_load_the_cache_lacks_is_refused(es):
    assert es.store(*new_event()) == "refused"


def test_a_master_with_another_job_cache_does_not_verify(master_opts):
    master_opts["master_job_cache"] = "redis"
    assert runner(master_opts).config.resolve_config(master_opts).verify_returns is False


def test_backfill_stores_what_the_job_cache_has(es, job_cache):
    job_cache.publish(minions=("web1", "web2"))
    job_cache.ret(ret_event(minion="web1"))
    job_cache.ret(ret_event(minion="web2", success=False))
    counts = es.backfill(jid=JID)
    assert (counts["loads added"], counts["returns added"]) == (1, 2)
    assert es.query(jid=JID) == {"web1": True, "web2": True}
    assert sorted((row["minion"], row["success"]) for row in es.query()) == [
        ("web1", True),
        ("web2", False),
    ]


def test_backfill_twice_adds_nothing_the_second_time(es, job_cache):
    job_cache.publish()
    job_cache.ret(ret_event())
    es.backfill(jid=JID)
    counts = es.backfill(jid=JID)
    assert (counts["loads added"], counts["returns added"]) == (0, 0)


def test_backfill_without_a_jid_reads_the_recent_jobs(es, job_cache, master_opts):
    import salt.utils.jid

    recent = salt.utils.jid.gen_jid(master_opts)
    job_cache.publish(jid=recent)
    job_cache.ret(ret_event(jid=recent))
    job_cache.publish(jid="20000101000000000000")  # older than any window
    job_cache.ret(ret_event(jid="20000101000000000000"))
    counts = es.backfill(since="1h")
    assert counts["returns added"] == 1
    assert es.query(jid=recent) == {"web1": True}


def test_backfill_of_more_jobs_than_a_batch_stores_them_all(es, job_cache, monkeypatch):
    monkeypatch.setattr(es.lib.catchup, "BACKFILL_BATCH", 2)
    jids = [f"2026112612000000000{n}" for n in range(3)]
    for jid in jids:
        job_cache.publish(jid=jid)
        job_cache.ret(ret_event(jid=jid))
    counts = es.backfill(since="20261126000000000000")
    assert (counts["loads added"], counts["returns added"]) == (3, 3)
    assert [es.query(jid=jid) for jid in jids] == [{"web1": True}] * 3


def test_a_long_backfill_reports_jobs_done_and_left_then_its_summary(es, job_cache):
    for n in range(40):
        jid = f"202611261200000{n:05d}"
        job_cache.publish(jid=jid)
        job_cache.ret(ret_event(jid=jid))
    job = as_runner_job(es)
    fake_clock(es).tick = 1.0  # each reading of the clock takes a second
    counts = es.backfill(since="2026-11-26", until="2026-11-27", progress=5)
    reports = job.progress()
    done = [report["done"] for report in reports]
    assert len(done) >= 3 and done == sorted(set(done))
    assert all(report["done"] + report["left"] == 40 for report in reports)
    assert "jobs read" in reports[-1]["message"]
    assert counts == {
        "jobs read": 40,
        "loads added": 40,
        "returns added": 40,
        "spooled": 0,
        "dead-lettered": 0,
        "refused": 0,
    }


def test_backfill_leaves_out_ignored_functions(es, job_cache):
    job_cache.publish(fun="saltutil.find_job")
    job_cache.ret(ret_event(fun="saltutil.find_job", ret={}))
    assert es.backfill(jid=JID)["returns added"] == 0


def batch(*tag_data):
    return [{"tag": tag, "data": data} for tag, data in tag_data]


def test_a_batch_is_stored_from_the_job_cache_and_its_forged_return_refused(es, job_cache):
    job_cache.publish(minions=("web1", "web2"))
    for minion in ("web1", "web2"):
        job_cache.ret(ret_event(minion=minion, ret=f"genuine {minion}"))
    events = batch(
        ret_event(minion="web1", ret="tampered"),
        ret_event(minion="web2", ret="genuine web2"),
        ret_event(minion="victim", ret="forged"),
    )
    counts = es.store_events(events)
    # Rows: the two returns and the job's load.
    assert (counts["stored"], counts["refused"]) == (3, 1)
    assert es.query(jid=JID) == {"web1": "genuine web1", "web2": "genuine web2"}


def test_a_batch_whose_returns_reach_the_job_cache_just_after_their_events_is_stored(es, job_cache):
    minions = [f"web{n}" for n in range(20)]
    job_cache.publish(minions=minions)
    events = [ret_event(minion=minion, ret=minion) for minion in minions]

    def write_cache():
        for event in events:
            job_cache.ret(event)

    counts = while_the_master_writes(es, lambda: es.store_events(batch(*events)), write_cache)
    assert counts["stored"] == 20 + 1  # and the job's load
    assert es.query(jid=JID) == {minion: minion for minion in minions}


def test_a_trimmed_return_in_a_batch_is_stored_whole(es, job_cache):
    job_cache.publish(fun="cmd.run", minions=("web1", "web2"))
    whole = "y" * 2_000_000
    job_cache.ret(ret_event(minion="web1", fun="cmd.run", ret=whole))
    job_cache.ret(ret_event(minion="web2", fun="cmd.run", ret="short"))
    es.store_events(
        batch(
            ret_event(minion="web1", fun="cmd.run", ret="VALUE_TRIMMED"),
            ret_event(minion="web2", fun="cmd.run", ret="short"),
        )
    )
    assert es.query(jid=JID) == {"web1": whole, "web2": "short"}


def test_a_return_is_stored_with_the_outputter_the_job_cache_writes_just_after_it(
    es, job_cache, master_opts
):
    import os

    import salt.payload
    import salt.utils.jid

    # The master writes return.p, then out.p: a reader in between sees no outputter.
    job_cache.publish(fun="state.apply")
    job_cache.ret(ret_event(fun="state.apply", ret={"state_|-a_|-a_|-run": {"result": True}}))
    folder = salt.utils.jid.jid_dir(JID, os.path.join(master_opts["cachedir"], "jobs"), "sha256")

    def write_out():
        with open(os.path.join(folder, "web1", "out.p"), "wb") as handle:
            salt.payload.dump("highstate", handle)

    while_the_master_writes(
        es,
        lambda: es.store(*ret_event(fun="state.apply", ret="VALUE_TRIMMED", out="highstate")),
        write_out,
    )
    assert es.query(jid=JID)["outputter"] == "highstate"
