"""
Real jobs on a real minion, stored by the reactor (and by the engine) into a
real PostgreSQL with the pgjsonb returner's keys, and read back by Salt's own
pgjsonb returner.
"""

import json
import time

import pytest
import salt.client
import salt.loader
from runnerlib import pgjsonb_keys
from saltlib import Reactions, reactor_master_config, run_job, with_engine


@pytest.fixture(scope="module")
def pg_master(salt_factories, postgres_server):
    database = postgres_server.create_database()
    # The server's own user, with a password: the pgjsonb returner needs one.
    overrides = reactor_master_config(pgjsonb_keys(postgres_server, database))
    factory = salt_factories.salt_master_daemon("es-pg-master", overrides=overrides)
    try:
        with factory.started():
            ret = factory.salt_run_cli().run("eventstore.init")
            assert ret.returncode == 0, ret
            factory.database = database
            yield factory
    finally:
        postgres_server.drop_database(database)


@pytest.fixture(scope="module")
def pg_minion(pg_master):
    factory = pg_master.salt_minion_daemon("es-pg-minion")
    with factory.started():
        yield factory


@pytest.fixture
def pg_client(pg_master):
    with salt.client.get_local_client(pg_master.config_file) as local:
        yield local


@pytest.fixture
def pg_reactions(event_listener, pg_master):
    return Reactions(event_listener, pg_master)


@pytest.fixture
def pg_db(postgres_server, pg_master):
    with postgres_server.connect(pg_master.database) as conn:
        yield conn


@pytest.fixture
def pgjsonb(pg_master):
    """Salt's own pgjsonb returner, configured by the same master config as our runner."""
    return salt.loader.returners(pg_master.config.copy(), {})


def stored(pg_reactions, minion, jid):
    assert pg_reactions.result(f"salt/job/{jid}/ret/{minion.id}") == "stored"


def test_a_return_is_stored_as_jsonb_in_the_pgjsonb_layout(
    pg_client, pg_minion, pg_db, pg_reactions
):
    jid, _ = run_job(pg_client, pg_minion, "cmd.run", ["printf 'grüße \U0001f680'; exit 3"])
    stored(pg_reactions, pg_minion, jid)
    row = pg_db.execute(
        "SELECT fun, return, success, full_ret->>'retcode' FROM salt_returns WHERE jid = %s", (jid,)
    ).fetchall()
    assert row == [("cmd.run", "grüße \U0001f680", "0", "3")]


def test_salts_pgjsonb_returner_reads_our_rows(pg_client, pg_minion, pg_reactions, pgjsonb):
    jid, _ = run_job(pg_client, pg_minion, "test.echo", ["read me"])
    stored(pg_reactions, pg_minion, jid)
    assert pgjsonb["pgjsonb.get_jid"](jid)[pg_minion.id]["return"] == "read me"
    assert pgjsonb["pgjsonb.get_load"](jid)["fun"] == "test.echo"
    assert pgjsonb["pgjsonb.get_fun"]("test.echo")[pg_minion.id]["jid"] == jid
    assert jid in pgjsonb["pgjsonb.get_jids"]()


def test_a_state_run_prints_with_the_highstate_outputter(
    pg_master, pg_client, pg_minion, pg_reactions
):
    jid, _ = run_job(pg_client, pg_minion, "state.single", ["test.succeed_with_changes", "demo"])
    stored(pg_reactions, pg_minion, jid)
    printed = pg_master.salt_run_cli().run("eventstore.query", f"jid={jid}", "--out=highstate")
    assert "Succeeded: 1 (changed=1)" in printed.stdout


def test_a_return_holding_a_nul_is_a_dead_letter_that_query_shows(
    pg_master, pg_client, pg_minion, pg_reactions, pg_db
):
    jid, ret = run_job(pg_client, pg_minion, "test.echo", ["before \x00 after"])
    assert ret == "before \x00 after"
    assert pg_reactions.result(f"salt/job/{jid}/ret/{pg_minion.id}") == "dead-lettered"
    shown = pg_master.salt_run_cli().run("eventstore.query", f"jid={jid}").data[pg_minion.id]
    assert shown.startswith("Not stored: the database refused it: unsupported Unicode escape")
    letters = dict(
        pg_db.execute("SELECT id, data FROM eventstore_dead_letters WHERE jid = %s", (jid,))
    )
    # The job's load holds the NUL too (its arguments): a dead letter of its own, without a minion.
    assert json.loads(letters[pg_minion.id])["return"] == "before \x00 after"
    assert json.loads(letters[""])["arg"] == ["before \x00 after"]


def test_salt_run_jobs_and_status_on_postgres(pg_master, pg_client, pg_minion, pg_reactions):
    jid, _ = run_job(pg_client, pg_minion, "test.echo", ["listed"])
    stored(pg_reactions, pg_minion, jid)
    ret = pg_master.salt_run_cli().run("eventstore.jobs", "fun=test.echo", "since=1h", "limit=1")
    assert ret.data["jobs"][0]["JID"] == jid
    status = pg_master.salt_run_cli().run("eventstore.status")
    assert status.returncode == 0
    assert (status.data["backend"], status.data["schema"]) == ("postgres", "ok")
    assert status.data["server_version"].startswith("PostgreSQL ")


@pytest.fixture(scope="module")
def pg_engine_master(salt_factories, postgres_server):
    database = postgres_server.create_database()
    keys = pgjsonb_keys(postgres_server, database)
    overrides = with_engine(reactor_master_config(keys), batch_size=100, max_delay=0.1)
    factory = salt_factories.salt_master_daemon("es-pg-engine-master", overrides=overrides)
    try:
        with factory.started():
            assert factory.salt_run_cli().run("eventstore.init").returncode == 0
            factory.database = database
            yield factory
    finally:
        postgres_server.drop_database(database)


def test_the_engine_stores_each_return_once_into_postgres(pg_engine_master, postgres_server):
    minion = pg_engine_master.salt_minion_daemon("es-pg-engine-minion")
    with minion.started(), salt.client.get_local_client(pg_engine_master.config_file) as client:
        jids = [run_job(client, minion, "test.echo", [f"engine {n}"])[0] for n in range(5)]
    with postgres_server.connect(pg_engine_master.database) as conn:
        deadline = time.time() + 60
        while True:
            rows = conn.execute(
                "SELECT jid, return FROM salt_returns WHERE jid = ANY(%s) ORDER BY jid", (jids,)
            ).fetchall()
            loads = conn.execute(
                "SELECT COUNT(*) FROM jids WHERE jid = ANY(%s)", (jids,)
            ).fetchone()
            if len(rows) >= len(jids) or time.time() > deadline:
                break
            time.sleep(0.2)
    assert rows == [(jid, f"engine {n}") for n, jid in enumerate(jids)]
    assert loads == (len(jids),)
