"""
Switching from the reactor to the engine: for a while both run on one master,
and every return is stored once, whichever of the two writes it first.
"""

import pytest
import salt.client
from conftest import REACTOR, Reactions, run_job
from runnerlib import REPO
from test_engine import rows_of


@pytest.fixture(scope="module")
def both_database(mysql_server):
    name = mysql_server.create_database()
    yield name
    mysql_server.drop_database(name)


@pytest.fixture(scope="module")
def both_master(salt_factories, mysql_server, both_database):
    overrides = {
        "reactor": REACTOR,
        "runner_dirs": [str(REPO / "_runners")],
        "engines_dirs": [str(REPO / "_engines")],
        "engines": [{"eventstore": {"max_delay": 0.05}}],
        "mysql.host": mysql_server.host,
        "mysql.port": int(mysql_server.port),
        "mysql.user": mysql_server.user,
        "mysql.pass": mysql_server.password,
        "mysql.db": both_database,
    }
    factory = salt_factories.salt_master_daemon("es-both-master", overrides=overrides)
    with factory.started():
        assert factory.salt_run_cli().run("eventstore.init").returncode == 0
        minion = factory.salt_minion_daemon("es-both-minion")
        with minion.started():
            yield factory, minion


@pytest.fixture
def db(mysql_server, both_database):
    conn = mysql_server.connect(both_database)
    yield conn
    conn.close()


def test_the_reactor_and_the_engine_together_store_each_return_once(both_master, db, event_listener):
    master, minion = both_master
    reactions = Reactions(event_listener, master)
    with salt.client.get_local_client(master.config_file) as client:
        jobs = [run_job(client, minion, "test.echo", [f"job {n}"]) for n in range(10)]
    verdicts = [reactions.result(f"salt/job/{jid}/ret/{minion.id}") for jid, _ in jobs]
    assert set(verdicts) <= {"stored", "duplicate"}
    for jid, ret in jobs:
        assert rows_of(db, jid) == [(minion.id, ret)]
    with db.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM jids WHERE jid IN %s", ([jid for jid, _ in jobs],))
        assert cur.fetchone()[0] == len(jobs)
