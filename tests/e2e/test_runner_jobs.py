"""
Runner jobs through real daemons: ``salt-run state.orchestrate`` of two steps,
the second failing, stored once under the master's id with its load, in
reactor mode (the README's reactor config) and in engine mode; eventstore's
own runner jobs never stored, by the reactor, the engine or a catch-up round.
"""

import contextlib
import json
import time

import pytest
import salt.client
import salt.loader
import salt.utils.user
from saltlib import FILES_DIR, Reactions, engine_master_config, mysql_master_config, run_job

ORCHESTRATION = "orch.two_steps"

#: What the database holds of eventstore's own runner jobs: nothing, ever.
OWN_RUNNER_ROWS = (
    "SELECT (SELECT COUNT(*) FROM salt_returns WHERE fun LIKE 'runner.eventstore.%%')"
    " + (SELECT COUNT(*) FROM jids WHERE `load` LIKE '%%\"runner.eventstore.%%')"
)


@pytest.fixture(scope="module")
def orchestration(master):
    """The two-step orchestration in the file_roots of the package's reactor master."""
    text = (FILES_DIR / "orch" / "two_steps.sls").read_text()
    with master.state_tree.base.temp_file("orch/two_steps.sls", text):
        yield ORCHESTRATION


@contextlib.contextmanager
def own_master(salt_factories, name, overrides):
    """
    A master of this module's own, started, its tables made, with the
    tests' orchestrations in its file_roots.
    """
    overrides = dict(overrides, file_roots={"base": [str(FILES_DIR)]})
    factory = salt_factories.salt_master_daemon(name, overrides=overrides)
    with factory.started():
        assert factory.salt_run_cli().run("eventstore.init").returncode == 0
        yield factory


@pytest.fixture(scope="module")
def catch_up_master(salt_factories, mysql_server, module_database):
    """
    A reactor master whose catch-up rounds look at every job folder
    (``catch_up_after: 0``), but run only when a test asks: the first round,
    with the first reaction, is over before any test.
    """
    overrides = mysql_master_config(mysql_server, module_database)
    overrides["eventstore"] = {"catch_up_after": 0, "catch_up_interval": 3600}
    with own_master(salt_factories, "es-runjobs-master", overrides) as factory:
        yield factory


@pytest.fixture(scope="module")
def catch_up_minion(catch_up_master):
    factory = catch_up_master.salt_minion_daemon("es-runjobs-minion")
    with factory.started():
        with salt.client.get_local_client(catch_up_master.config_file) as client:
            run_job(client, factory, "test.ping")
        deadline = time.time() + 60
        while (
            not catch_up_master.salt_run_cli()
            .run("eventstore.catch_up", "force=False")
            .data["last_round"]
        ):
            assert time.time() < deadline, "no catch-up round with the first reaction"
            time.sleep(1)
        yield factory


@pytest.fixture(scope="module")
def engine_master(salt_factories, mysql_server, module_database):
    overrides = engine_master_config(mysql_server, module_database, batch_size=100, max_delay=0.1)
    with own_master(salt_factories, "es-runjobs-engine-master", overrides) as factory:
        yield factory


@pytest.fixture(scope="module")
def engine_minion(engine_master):
    factory = engine_master.salt_minion_daemon("es-runjobs-engine-minion")
    with factory.started():
        yield factory


def orchestrate(master, minion, event_listener):
    """
    Run the two-step orchestration with ``salt-run``; its jid, from its
    result event.
    """
    started = time.time()
    ret = master.salt_run_cli(timeout=180).run(
        "state.orchestrate", ORCHESTRATION, f"pillar={json.dumps({'target': minion.id})}"
    )
    assert ret.returncode != 0, ret  # the second step fails
    deadline = time.time() + 30
    while time.time() < deadline:
        found = [
            event.data["jid"]
            for event in event_listener.get_events(
                [(master.id, "salt/run/*/ret")], after_time=started - 1
            )
            if event.data.get("fun") == "runner.state.orchestrate"
        ]
        if found:
            (jid,) = found
            return jid
        time.sleep(0.2)
    raise AssertionError(f"no result event of the orchestration: {ret}")


def rows(mysql_server, database, sql, args=(), expected=1, timeout=60):
    """The rows ``sql`` selects once there are ``expected`` (the engine stores in its own time)."""
    deadline = time.time() + timeout
    while True:
        with mysql_server.connect(database) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            found = cur.fetchall()
        if len(found) >= expected or time.time() > deadline:
            return found
        time.sleep(0.2)


def stored_orchestration(mysql_server, database, jid):
    (row,) = rows(
        mysql_server,
        database,
        "SELECT id, fun, success, `return`, full_ret FROM salt_returns WHERE jid = %s",
        (jid,),
    )
    (load,) = rows(mysql_server, database, "SELECT `load` FROM jids WHERE jid = %s", (jid,))[0]
    minion_id, fun, success, ret, full_ret = row
    return {
        "id": minion_id,
        "fun": fun,
        "success": success,
        "return": json.loads(ret),
        "full_ret": json.loads(full_ret),
        "load": json.loads(load),
    }


def own_runner_rows(mysql_server, database):
    with mysql_server.connect(database) as conn, conn.cursor() as cur:
        cur.execute(OWN_RUNNER_ROWS)
        return cur.fetchone()[0]


def step_results(ret):
    """The orchestration's state results, by state name, from its stored return."""
    (states,) = ret["data"].values()
    return {state["__id__"]: state["result"] for state in states.values()}


def test_reactor_stores_a_failed_orchestration_once_with_its_load(
    master, minion, orchestration, event_listener, mysql_server, e2e_database
):
    reactions = Reactions(event_listener, master)
    jid = orchestrate(master, minion, event_listener)
    assert reactions.result(f"salt/run/{jid}/ret") == "stored"
    stored = stored_orchestration(mysql_server, e2e_database, jid)
    assert (stored["id"], stored["fun"], stored["success"]) == (
        master.config["id"],
        "runner.state.orchestrate",
        "0",
    )
    assert step_results(stored["return"]) == {
        "echo-on-the-minion": True,
        "the-step-that-fails": False,
    }
    # What Alcali's job list reads: the user from the load, arguments and success from full_ret.
    assert stored["load"]["user"] == salt.utils.user.get_specific_user()
    assert stored["load"]["fun"] == "runner.state.orchestrate"
    assert stored["full_ret"]["fun_args"][0] == ORCHESTRATION
    assert stored["full_ret"]["success"] is False


def test_salt_run_query_reads_the_orchestration_back(
    master, minion, orchestration, event_listener, mysql_server, e2e_database
):
    jid = orchestrate(master, minion, event_listener)
    stored_orchestration(mysql_server, e2e_database, jid)
    ret = master.salt_run_cli().run("eventstore.query", f"jid={jid}", "--out=json")
    assert ret.returncode == 0, ret
    assert step_results(ret.data[master.config["id"]])["the-step-that-fails"] is False


def test_the_official_returner_reads_the_orchestration_back(
    master, minion, orchestration, event_listener, mysql_server, e2e_database
):
    jid = orchestrate(master, minion, event_listener)
    stored_orchestration(mysql_server, e2e_database, jid)
    returner = salt.loader.returners(master.config.copy(), {})
    master_id = master.config["id"]
    assert returner["mysql.get_jid"](jid)[master_id]["fun"] == "runner.state.orchestrate"
    assert returner["mysql.get_load"](jid)["user"] == salt.utils.user.get_specific_user()


def test_eventstores_own_runner_jobs_are_never_stored_by_the_reactor_nor_catch_up(
    catch_up_master, catch_up_minion, event_listener, mysql_server, module_database
):
    reactor_master, reactor_minion = catch_up_master, catch_up_minion
    reactions = Reactions(event_listener, reactor_master)
    # Each stored return is a runner job of the reactor's (runnerclient_returns
    # is on: each is in the job cache); salt-run eventstore.* by hand is one too.
    with salt.client.get_local_client(reactor_master.config_file) as client:
        jids = [run_job(client, reactor_minion, "test.echo", [str(n)])[0] for n in range(5)]
    for jid in jids:
        assert reactions.result(f"salt/job/{jid}/ret/{reactor_minion.id}") == "stored"
    assert reactor_master.salt_run_cli().run("eventstore.status").returncode == 0
    orchestrate(reactor_master, reactor_minion, event_listener)  # stored after the rest
    round_ = reactor_master.salt_run_cli().run("eventstore.catch_up", "--out=json")
    assert round_.data["ran"] is True and round_.data["error"] is None, round_
    # It looked at the test.echo jobs and the reactor's runner jobs that stored them.
    assert round_.data["last_round"]["jobs changed"] >= 2 * len(jids), round_
    assert own_runner_rows(mysql_server, module_database) == 0


def test_engine_stores_a_failed_orchestration_once_with_its_load(
    engine_master, engine_minion, event_listener, mysql_server, module_database
):
    jid = orchestrate(engine_master, engine_minion, event_listener)
    stored = stored_orchestration(mysql_server, module_database, jid)
    assert (stored["id"], stored["fun"], stored["success"]) == (
        engine_master.config["id"],
        "runner.state.orchestrate",
        "0",
    )
    assert stored["load"]["user"] == salt.utils.user.get_specific_user()


def test_engine_never_stores_eventstores_own_runner_jobs(
    engine_master, engine_minion, event_listener, mysql_server, module_database
):
    assert engine_master.salt_run_cli().run("eventstore.status").returncode == 0
    # Stored after the status call's result: the engine has read past it.
    jid = orchestrate(engine_master, engine_minion, event_listener)
    stored_orchestration(mysql_server, module_database, jid)
    assert own_runner_rows(mysql_server, module_database) == 0
