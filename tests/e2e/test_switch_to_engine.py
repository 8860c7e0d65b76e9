"""
Switching from the reactor to the engine: for a while both run on one master,
and every return is stored once, whichever of the two writes it first.
"""

import ast
import time

import pytest
import salt.client
from saltlib import Reactions, engine_master_config, run_job
from test_engine import rows_of


@pytest.fixture(scope="module")
def e2e_database(module_database):
    return module_database


def engine_handled(master, expected, timeout=60):
    """
    How many events the engine stored or found stored, from its batch counts
    in the master log (it logs them at debug), once there are ``expected``.
    """
    deadline = time.time() + timeout
    while True:
        with open(master.config["log_file"], encoding="utf-8", errors="replace") as log:
            batches = [
                ast.literal_eval(line.split("eventstore engine: ", 1)[1].strip())
                for line in log
                if "eventstore engine: {" in line
            ]
        handled = sum(counts["stored"] + counts["duplicate"] for counts in batches)
        if handled >= expected or time.time() > deadline:
            return handled
        time.sleep(0.2)


@pytest.fixture(scope="module")
def both_master(salt_factories, mysql_server, e2e_database):
    overrides = engine_master_config(mysql_server, e2e_database, reactor=True, max_delay=0.05)
    factory = salt_factories.salt_master_daemon("es-both-master", overrides=overrides)
    with factory.started():
        assert factory.salt_run_cli().run("eventstore.init").returncode == 0
        minion = factory.salt_minion_daemon("es-both-minion")
        with minion.started():
            yield factory, minion


def test_the_reactor_and_the_engine_together_store_each_return_once(
    both_master, db, event_listener
):
    master, minion = both_master
    reactions = Reactions(event_listener, master)
    with salt.client.get_local_client(master.config_file) as client:
        jobs = [run_job(client, minion, "test.echo", [f"job {n}"]) for n in range(10)]
    verdicts = [reactions.result(f"salt/job/{jid}/ret/{minion.id}") for jid, _ in jobs]
    assert set(verdicts) <= {"stored", "duplicate"}
    # The engine took every load and return too (a reactor storing them all
    # alone would also leave one row each).
    assert engine_handled(master, 2 * len(jobs)) >= 2 * len(jobs)
    for jid, ret in jobs:
        assert rows_of(db, jid) == [(minion.id, ret)]
    with db.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM jids WHERE jid IN %s", ([jid for jid, _ in jobs],))
        assert cur.fetchone()[0] == len(jobs)
