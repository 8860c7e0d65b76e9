"""
What the result of a master's runner or wheel job (``salt/run/<jid>/ret``,
``salt/wheel/<jid>/ret``) becomes: a ``salt_returns`` row keyed by the
master's id and a ``jids`` row, or nothing (eventstore's own jobs, secrets,
``ignore_funs``), or a refusal; and what the reactor SLS hands to the runner.
"""

import json

import pytest
from runnerlib import JID, MASTER_ID, ret_event, run_event
from saltext.eventstore import catchup, config, rows
from test_salt_integration import master_opts, starts_the_runner  # noqa: F401  (a fixture)


def row_for(tag, data, ignore=rows.ALWAYS_IGNORED):
    kind, jid, _ = rows.parse_tag(tag)
    return rows.master_job_row(kind, jid, MASTER_ID, data, ignore)


@pytest.mark.parametrize(
    "tag, kind", [(f"salt/run/{JID}/ret", "runner"), (f"salt/wheel/{JID}/ret", "wheel")]
)
def test_parse_tag_reads_a_runner_or_wheel_result_tag(tag, kind):
    assert rows.parse_tag(tag) == (kind, JID, None)


@pytest.mark.parametrize(
    "tag",
    [
        f"salt/run/{JID}/new",
        f"salt/run/{JID}/progress",
        f"salt/run/{JID}/args",
        f"salt/wheel/{JID}/new",
    ],
)
def test_parse_tag_ignores_the_other_events_of_runner_and_wheel_jobs(tag):
    assert rows.parse_tag(tag) is None


def test_runner_result_row_is_keyed_by_the_master_id_with_the_returner_columns():
    tag, data = run_event(ret={"data": {"step": True}})
    row = row_for(tag, data)
    assert (row.fun, row.jid, row.id, row.success) == (
        "runner.state.orchestrate",
        JID,
        MASTER_ID,
        "1",
    )
    assert json.loads(row.ret) == {"data": {"step": True}}


def test_runner_result_full_ret_is_the_event_data():
    tag, data = run_event()
    assert json.loads(row_for(tag, data).full_ret) == data


def test_failed_orchestration_has_success_zero():
    tag, data = run_event(success=False)
    assert row_for(tag, data).success == "0"


def test_long_runner_name_is_cut_to_the_column_and_kept_whole_in_full_ret():
    fun = "runner." + "x" * 60 + ".run"
    tag, data = run_event(fun=fun)
    row = row_for(tag, data)
    assert row.fun == fun[: rows.FUN_WIDTH] and json.loads(row.full_ret)["fun"] == fun


def test_wheel_result_row_is_keyed_by_the_master_id():
    tag, data = run_event(fun="wheel.key.list_all", ret={"minions": ["web1"]})
    assert (row_for(tag, data).fun, row_for(tag, data).id) == ("wheel.key.list_all", MASTER_ID)


@pytest.mark.parametrize(
    "fun",
    [
        "runner.eventstore.store",
        "runner.eventstore.query",
        "wheel.key.gen",
        "wheel.key.gen_accept",
        "wheel.config.values",
    ],
)
def test_eventstores_own_runner_jobs_and_wheel_secrets_are_never_stored(fun):
    tag, data = run_event(fun=fun)
    assert row_for(tag, data) is None


def test_ignore_funs_names_runner_jobs_by_their_stored_name():
    ignore = rows.ALWAYS_IGNORED + ("runner.test.*",)
    assert row_for(*run_event(fun="runner.test.sleep"), ignore) is None
    assert row_for(*run_event(fun="runner.state.orchestrate"), ignore) is not None


def test_a_minion_glob_does_not_ignore_a_runner_of_the_same_name():
    ignore = rows.ALWAYS_IGNORED + ("test.*",)
    assert row_for(*run_event(fun="runner.test.sleep"), ignore) is not None


def test_a_salt_run_of_a_function_that_does_not_exist_is_ignored():
    # Salt fires its error with the bare name and keeps no job of it.
    tag, data = run_event(fun="nope.nope", ret="'nope.nope' is not available.", success=False)
    assert row_for(tag, data) is None


def test_a_result_a_minion_sent_is_refused():
    tag, data = run_event(cmd="_minion_event", id="web1")
    with pytest.raises(rows.Refused, match="web1"):
        row_for(tag, data)


@pytest.mark.parametrize(
    "tag, data",
    [
        ("salt/run/not-a-jid/ret", run_event()[1]),
        (f"salt/run/{JID}/ret", run_event(jid="20260101000000000000")[1]),
        (f"salt/run/{JID}/ret", {"fun": "runner.x", "jid": JID}),
        (f"salt/run/{JID}/ret", "not a mapping"),
    ],
    ids=["tag-jid", "jid-disagrees", "no-return", "not-a-mapping"],
)
def test_a_result_that_cannot_be_a_jobs_is_refused(tag, data):
    with pytest.raises(rows.Refused):
        rows.master_job_row("runner", tag.split("/")[2], MASTER_ID, data)


def test_a_master_without_an_id_is_refused():
    with pytest.raises(rows.Refused):
        rows.master_job_row("runner", JID, "", run_event()[1])


def test_runner_job_load_has_function_arguments_user_and_the_master_as_target():
    _, data = run_event()
    load = json.loads(rows.master_job_load(JID, MASTER_ID, data).load)
    assert load == {
        "jid": JID,
        "id": MASTER_ID,
        "tgt": MASTER_ID,
        "fun": "runner.state.orchestrate",
        "arg": data["fun_args"],
        "fun_args": data["fun_args"],
        "user": "alice",
        "minions": [],
    }


def test_job_cache_copy_replaces_the_events_return_and_success():
    _, data = run_event(success=True)
    cached = {"return": dict(data, success=False, _stamp="2026-11-26T12:00:00.000001")}
    merged = rows.with_master_job_cache(data, cached)
    assert merged["success"] is False and merged["_stamp"] == data["_stamp"]


@pytest.mark.parametrize(
    "cached",
    [{"return": "not a result"}, {"return": {"fun": "runner.other", "return": 1}}, None],
    ids=["no-result", "other-function", "nothing"],
)
def test_job_cache_copy_that_is_not_this_jobs_result_is_refused(cached):
    with pytest.raises(rows.Refused):
        rows.with_master_job_cache(run_event()[1], cached)


def test_catch_up_makes_a_runner_jobs_rows_from_the_job_cache_as_salt_keeps_them():
    _, data = run_event(success=False)
    # local_cache's get_load and get_jid of a runner job (salt/utils/job.py store_job).
    load = {"id": MASTER_ID, "tgt": MASTER_ID, "jid": JID, "return": data, "fun": data["fun"]}
    load["user"] = "alice"
    rows_ = catchup.rows_of_job(JID, load, {MASTER_ID: {"return": data}}, config.resolve_config({}))
    load_row, ret_row = rows_
    assert json.loads(load_row.load)["fun_args"] == data["fun_args"]
    assert (ret_row.id, ret_row.fun, ret_row.success) == (MASTER_ID, data["fun"], "0")


# The reactor SLS decides before any runner job, as the runner does.


@pytest.mark.parametrize("glob", rows.ALWAYS_IGNORED)
def test_reactor_sls_ignores_what_the_runner_always_ignores(master_opts, glob):  # noqa: F811
    fun = glob.replace("*", "store")
    assert not starts_the_runner(master_opts, *run_event(fun=fun))
    assert not starts_the_runner(master_opts, *ret_event(fun=fun))


def test_reactor_sls_hands_an_orchestrations_result_to_the_runner(master_opts):  # noqa: F811
    assert starts_the_runner(master_opts, *run_event())


@pytest.mark.parametrize("fun", ["runner.eventstore.query", "wheel.key.gen", "runner.test.sleep"])
def test_reactor_sls_starts_no_runner_job_for_a_result_never_stored(master_opts, fun):  # noqa: F811
    master_opts["eventstore"]["ignore_funs"] = ["runner.test.*"]
    assert not starts_the_runner(master_opts, *run_event(fun=fun))
