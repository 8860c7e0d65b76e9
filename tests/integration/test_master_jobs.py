"""
Runner and wheel jobs' results (``salt/run/<jid>/ret``, ``salt/wheel/<jid>/ret``)
checked against the master job cache, written here by Salt's own
``store_job`` as ``salt-run`` and the reactor write it; and read back, pruned
and backfilled like minion returns.
"""

import json
import types

import pytest
import salt.config
import salt.loader
import salt.utils.job
from runnerlib import JID, MASTER_ID, count, load_runner, run_event

OLD_JID = "20201031235959999999"


@pytest.fixture
def master_opts(tmp_path):
    opts = salt.config.master_config(None)
    opts.update(id=MASTER_ID, cachedir=str(tmp_path / "cache"))
    return opts


@pytest.fixture
def es(master_opts):
    runner = load_runner(master_opts)
    runner.init()
    return runner


@pytest.fixture
def store_job(master_opts):
    """
    What Salt does with a runner or wheel job's result before it fires it
    (salt/client/mixins.py ``low``): ``store_job`` into local_cache, under
    the master's id.
    """
    mminion = types.SimpleNamespace(returners=salt.loader.returners(master_opts, {}))

    def store(tag_data):
        _, data = tag_data
        load = {"id": MASTER_ID, "tgt": MASTER_ID, "jid": data["jid"], "return": dict(data)}
        salt.utils.job.store_job(master_opts, load, event=None, mminion=mminion)

    return store


def stored_rows(es, jid=JID):
    return es._store().select(
        "SELECT `id`, `fun`, `success`, `return` FROM `salt_returns` WHERE `jid` = %s", (jid,)
    )


def stored_load(es, jid=JID):
    (load,) = es._store().select("SELECT `load` FROM `jids` WHERE `jid` = %s", (jid,))[0]
    return json.loads(load)


def test_an_orchestrations_result_is_stored_under_the_master_id(es, store_job):
    event = run_event(ret={"data": {"step": "done"}}, success=False)
    store_job(event)
    assert es.store(*event) == "stored"
    assert stored_rows(es) == [
        (MASTER_ID, "runner.state.orchestrate", "0", json.dumps({"data": {"step": "done"}}))
    ]


def test_its_load_is_stored_with_function_arguments_and_user(es, store_job):
    event = run_event()
    store_job(event)
    es.store(*event)
    load = stored_load(es)
    assert (load["fun"], load["arg"], load["user"]) == (
        "runner.state.orchestrate",
        event[1]["fun_args"],
        "alice",
    )


def test_the_job_caches_copy_is_stored_not_the_events(es, store_job):
    tag, data = run_event(ret={"data": "whole"})
    store_job((tag, data))
    # The event bus cut it (max_event_size); the job cache keeps it whole.
    es.store(tag, dict(data, **{"return": "VALUE_TRIMMED"}))
    assert es.query(jid=JID) == {MASTER_ID: {"data": "whole"}}


def test_a_result_the_job_cache_lacks_is_refused_as_forged(es, caplog):
    tag, data = run_event()
    assert es.store(tag, data) == "refused"
    assert tag in caplog.text and "forged" in caplog.text
    assert count(es) == 0


def test_a_result_a_minion_sent_is_refused_even_for_a_real_job(es, store_job, caplog):
    tag, data = run_event()
    store_job((tag, data))
    forged = {"id": "web1", "tag": tag, "data": data, "cmd": "_minion_event", **data}
    assert es.store(tag, forged) == "refused"
    assert "minion 'web1' sent it" in caplog.text


@pytest.mark.parametrize("option", ["runner_returns", "runnerclient_returns"])
def test_a_result_is_ignored_when_the_master_keeps_no_runner_jobs(master_opts, option, caplog):
    master_opts[option] = False
    es = load_runner(master_opts)
    es.init()
    assert es.store(*run_event()) == "ignored"
    assert "forged" not in caplog.text


def test_a_wheel_jobs_result_is_stored_under_the_master_id(es, store_job):
    event = run_event(fun="wheel.key.list_all", ret={"minions": ["web1"]}, fun_args=[])
    store_job(event)
    assert es.store(*event) == "stored"
    assert es.query(jid=JID) == {MASTER_ID: {"minions": ["web1"]}}


def test_eventstores_own_runner_job_is_never_stored(es, store_job):
    event = run_event(fun="runner.eventstore.store", user="Reactor")
    store_job(event)
    assert es.store(*event) == "ignored"
    assert count(es) == 0 and count(es, "jids") == 0


def test_backfill_copies_runner_jobs_but_not_eventstores_own(es, store_job):
    store_job(run_event(jid=JID))
    store_job(run_event(jid="20261126120000000001", fun="runner.eventstore.store"))
    store_job(run_event(jid="20261126120000000002", fun="wheel.key.gen"))
    es.backfill(since="2026-11-26")
    assert [row[:2] for row in stored_rows(es)] == [(MASTER_ID, "runner.state.orchestrate")]
    assert (count(es), count(es, "jids")) == (1, 1)
    assert stored_load(es)["user"] == "alice"


def test_jobs_lists_runner_jobs_by_their_runner_name(es, store_job):
    store_job(run_event())
    es.store(*run_event())
    (job,) = es.jobs(fun="runner.*", since="2026-11-26")["jobs"]
    assert (job["Function"], job["User"], job["Returned"]) == (
        "runner.state.orchestrate",
        "alice",
        1,
    )


def test_prune_deletes_a_runner_jobs_rows_as_any_others(es, store_job):
    store_job(run_event(jid=OLD_JID))
    es.store(*run_event(jid=OLD_JID))
    es._store().run(lambda cur: cur.execute("UPDATE salt_returns SET alter_time = '2020-10-31'"))
    es.prune(before="2020-11-01")
    assert (count(es), count(es, "jids")) == (0, 0)
