"""
Nothing lost: a real MariaDB, and a real PostgreSQL, stopped and started under
a stream of real returns, and returns made while the reactor was off recovered
from the job cache.
"""

import pytest
import salt.client
from runnerlib import mysql_keys, pgjsonb_keys
from saltlib import Reactions, mysql_master_config, reactor_master_config, run_job


def stored_counts(server, database, jids):
    conn = server.connect(database)
    with conn.cursor() as cur:
        cur.execute("SELECT jid, COUNT(*) FROM salt_returns GROUP BY jid")
        counts = dict(cur.fetchall())
    conn.close()
    return {jid: counts.get(jid, 0) for jid in jids}


@pytest.fixture(scope="module", params=["mysql", "postgres"])
def outage_setup(request, salt_factories):
    backend = request.param
    server = request.getfixturevalue(f"own_{backend}_server")
    database = server.create_database()
    keys = {"mysql": mysql_keys, "postgres": pgjsonb_keys}[backend](server, database)
    master = salt_factories.salt_master_daemon(
        f"es-outage-{backend}", overrides=reactor_master_config(keys)
    )
    with master.started():
        assert master.salt_run_cli().run("eventstore.init").returncode == 0
        minion = master.salt_minion_daemon(f"es-outage-{backend}-minion")
        with minion.started():
            yield master, minion, server, database


def test_every_return_made_across_an_outage_is_stored_exactly_once(outage_setup, event_listener):
    master, minion, server, database = outage_setup
    reactions = Reactions(event_listener, master)
    jids = []
    with salt.client.get_local_client(master.config_file) as client:
        for n in range(30):
            if n == 8:
                server.pause()
            if n == 20:
                server.resume()
            jids.append(run_job(client, minion, "test.echo", [f"return {n}"])[0])
        verdicts = [reactions.result(f"salt/job/{jid}/ret/{minion.id}") for jid in jids]
        assert "spooled" in verdicts  # the outage was real
        # Nobody runs replay: later stores write the spool back, a batch each.
        for _ in range(20):
            if all(stored_counts(server, database, jids).values()):
                break
            pinged, _ = run_job(client, minion, "test.ping")
            reactions.result(f"salt/job/{pinged}/ret/{minion.id}")
    assert set(stored_counts(server, database, jids).values()) == {1}


def test_the_outage_was_logged_once(outage_setup):
    master, *_ = outage_setup
    with open(master.config["log_file"], encoding="utf-8", errors="replace") as log:
        text = log.read()
    assert text.count("is unavailable") == 1
    assert text.count("spool is written back") >= 1


@pytest.fixture(scope="module")
def reactorless_master(salt_factories, mysql_server):
    """A master that never stores as returns come: the reactor is off."""
    database = mysql_server.create_database()
    overrides = mysql_master_config(mysql_server, database)
    del overrides["reactor"]
    master = salt_factories.salt_master_daemon("es-backfill-master", overrides=overrides)
    with master.started():
        assert master.salt_run_cli().run("eventstore.init").returncode == 0
        minion = master.salt_minion_daemon("es-backfill-minion")
        with minion.started():
            with salt.client.get_local_client(master.config_file) as client:
                jids = [run_job(client, minion, "test.echo", [f"missed {n}"])[0] for n in range(3)]
            yield master, minion, jids, database
    mysql_server.drop_database(database)


def test_backfill_recovers_returns_made_while_the_reactor_was_off(reactorless_master, mysql_server):
    master, minion, jids, database = reactorless_master
    ret = master.salt_run_cli().run("eventstore.backfill")
    assert ret.returncode == 0
    assert ret.data["returns added"] >= 3
    assert set(stored_counts(mysql_server, database, jids).values()) == {1}
    shown = master.salt_run_cli().run("eventstore.query", f"jid={jids[0]}")
    assert shown.data == {minion.id: "missed 0"}


def test_backfill_run_again_adds_nothing(reactorless_master):
    master, *_ = reactorless_master
    master.salt_run_cli().run("eventstore.backfill")
    again = master.salt_run_cli().run("eventstore.backfill")
    assert (again.data["returns added"], again.data["loads added"]) == (0, 0)
