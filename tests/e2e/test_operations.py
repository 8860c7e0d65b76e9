"""
Operating the store through salt-run on a real master: exit codes for
monitoring and scripts, and no database password in the master's log, in
events or in runner returns, whether storing works or the connection fails.
"""

import contextlib
import json
import pathlib

import pytest
import salt.config
import salt.exceptions
import salt.runner
from saltlib import Reactions, mysql_master_config, run_job

WRONG_PASSWORD = "not-the-e2e-password-4711"


def master_log(factory):
    return pathlib.Path(factory.config["log_file"]).read_text(errors="replace")


def events_text(event_listener, master, since):
    return json.dumps(
        [event.data for event in event_listener.get_events([(master.id, "*")], after_time=since)],
        default=repr,
    )


@pytest.fixture(scope="module")
def broken_master(salt_factories, mysql_server, e2e_database, e2e_user):
    """A master whose database password is wrong: every connection fails."""
    overrides = mysql_master_config(mysql_server, e2e_database, e2e_user[0], WRONG_PASSWORD)
    # Stored as it comes (not checked against a job cache): the event below is made up.
    overrides["eventstore"] = {"verify_returns": False}
    factory = salt_factories.salt_master_daemon("es-broken-master", overrides=overrides)
    with factory.started():
        yield factory


def test_salt_run_status_of_a_healthy_store_exits_zero(master):
    ret = master.salt_run_cli().run("eventstore.status")
    assert ret.returncode == 0, ret
    assert (ret.data["healthy"], ret.data["backend"], ret.data["schema"]) == (True, "mysql", "ok")


def test_salt_run_status_exits_nonzero_when_the_database_refuses_the_login(broken_master):
    ret = broken_master.salt_run_cli().run("eventstore.status")
    assert ret.returncode != 0
    assert ret.data["healthy"] is False
    assert "Access denied" in ret.data["problems"][0]


def test_salt_run_prune_without_an_age_exits_nonzero(master):
    ret = master.salt_run_cli().run("eventstore.prune")
    assert ret.returncode != 0
    assert "prune has no default age" in ret.stdout


def test_no_password_in_log_events_or_returns_after_storing(
    master, client, minion, reactions, event_listener, e2e_user
):
    password = e2e_user[1]
    jid, _ = run_job(client, minion, "test.ping")
    assert reactions.result(f"salt/job/{jid}/ret/{minion.id}") == "stored"
    status = master.salt_run_cli().run("eventstore.status")
    assert password not in status.stdout
    assert password not in events_text(event_listener, master, reactions.since)
    assert password not in master_log(master)


def test_no_password_in_log_events_or_returns_after_a_failed_connection(
    broken_master, event_listener
):
    reactions = Reactions(event_listener, broken_master)
    jid = "20261126120000000001"
    tag = f"salt/job/{jid}/ret/ghost"
    data = {"id": "ghost", "jid": jid, "fun": "test.ping", "return": True, "success": True}
    sent = broken_master.salt_run_cli().run("event.send", tag, f"data={json.dumps(data)}")
    assert sent.returncode == 0, sent
    assert reactions.result(tag) == "spooled"
    status = broken_master.salt_run_cli().run("eventstore.status")
    log = master_log(broken_master)
    assert "is unavailable" in log and "Access denied" in log  # the failure is logged...
    assert WRONG_PASSWORD not in log  # ...without the password
    assert WRONG_PASSWORD not in status.stdout
    assert WRONG_PASSWORD not in events_text(event_listener, broken_master, reactions.since)


def call_as(master, user, fun, **kwargs):
    """A runner call through the master's eauth, as salt-api makes it."""
    low = {"fun": fun, "kwarg": kwargs, "eauth": "auto", "username": user, "password": "x"}
    with salt.runner.RunnerClient(salt.config.client_config(master.config_file)) as runner:
        return runner.cmd_sync(low, timeout=60)


def test_an_api_user_allowed_status_gets_it(master):
    assert call_as(master, "ops", "eventstore.status")["healthy"] is True


def test_an_api_user_allowed_status_cannot_read_returns(master):
    with pytest.raises(salt.exceptions.EauthAuthenticationError):
        call_as(master, "ops", "eventstore.query", jid="20261126120000000000")


@contextlib.contextmanager
def web_return(db, jid, ret):
    row = (
        "test.echo",
        jid,
        json.dumps(ret),
        "web1",
        "1",
        json.dumps({"id": "web1", "return": ret}),
    )
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO salt_returns (fun, jid, `return`, id, success, full_ret)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            row,
        )
    db.commit()
    try:
        yield
    finally:
        with db.cursor() as cur:
            cur.execute("DELETE FROM salt_returns WHERE jid = %s AND id = 'web1'", (jid,))
        db.commit()


def test_an_api_user_allowed_web_minions_reads_their_returns_only(
    master, client, minion, reactions, db
):
    jid, _ = run_job(client, minion, "test.echo", ["for es-minion only"])
    reactions.result(f"salt/job/{jid}/ret/{minion.id}")
    # A web minion's return of the same job, as the reactor would have stored
    # it; removed after, as it is no real return (the package shares its database).
    with web_return(db, jid, "for web1"):
        allowed = call_as(master, "webteam", "eventstore.query", jid=jid, minion="web*")
    assert allowed == {"web1": "for web1"}
    with pytest.raises(salt.exceptions.EauthAuthenticationError):
        call_as(master, "webteam", "eventstore.query", jid=jid)
    with pytest.raises(salt.exceptions.EauthAuthenticationError):
        call_as(master, "webteam", "eventstore.query", jid=jid, minion=minion.id)
