"""
Three real masters, each storing through another node of a real three-node
Galera cluster (``eventstore: mysql_hosts``, each master's list starting at
its own node), and one real multi-master minion whose schedule returns to all
three at once: the way two masters' stores of one return meet as a Galera
certification conflict, and the way nodes die and come back under them.
"""

import contextlib
import shutil
import time
from pathlib import Path

import pytest
import salt.client
from saltlib import Reactions, mysql_master_config, run_job

SCHEDULE = {
    # A returner keeps the minion's jid for every master: one row for all three.
    "to-every-master": {
        "function": "test.echo",
        "args": ["scheduled"],
        "seconds": 2,
        "returner": "local",
    },
}


# A read waits until the node has applied what the cluster committed before it.
CAUSAL_READS = "SET SESSION wsrep_sync_wait = 1"


@pytest.fixture(scope="module")
def database(galera):
    name = galera.nodes[0].create_database()
    yield name
    next(node for node in galera.nodes if node.proc is not None).drop_database(name)


def hosts_from(galera, first):
    """The cluster's nodes, starting at node ``first``."""
    hosts = galera.hosts()
    return hosts[first:] + hosts[:first]


@pytest.fixture(scope="module")
def masters(salt_factories, galera, database):
    with contextlib.ExitStack() as running:
        factories = []
        for index in range(3):
            config = {
                **mysql_master_config(galera.nodes[0], database),
                "eventstore": {"mysql_hosts": hosts_from(galera, index)},
                # Another host each: a minion tells its masters apart by host alone.
                "interface": f"127.0.0.{index + 1}",
            }
            factory = salt_factories.salt_master_daemon(
                f"es-galera-master-{index + 1}", overrides=config
            )
            if factories:
                # Multi-master needs one key pair on all masters (the first made it).
                pki_dir = Path(factory.config["pki_dir"])
                pki_dir.mkdir(parents=True, exist_ok=True)
                for name in ("master.pem", "master.pub"):
                    shutil.copy(Path(factories[0].config["pki_dir"]) / name, pki_dir / name)
            running.enter_context(factory.started())
            factories.append(factory)
        ret = factories[0].salt_run_cli().run("eventstore.init")
        assert ret.returncode == 0, ret
        yield factories


@pytest.fixture(scope="module")
def minion(masters, event_listener):
    factory = masters[0].salt_minion_daemon(
        "es-galera-minion",
        overrides={
            "master": [f"{m.config['interface']}:{m.config['ret_port']}" for m in masters],
            "schedule": SCHEDULE,
        },
    )
    since = time.time()
    with factory.started():
        for master in masters[1:]:  # started() waits for the first master only
            started = event_listener.wait_for_events(
                [(master.id, f"salt/minion/{factory.id}/start")], after_time=since, timeout=90
            )
            assert started.found_all_events, f"{factory.id} did not start on {master.id}"
        yield factory


def rows_per_return(node, database):
    """``{(jid, minion): rows}`` as ``node`` has them."""
    with node.connect(database) as conn, conn.cursor() as cur:
        cur.execute(CAUSAL_READS)
        cur.execute("SELECT jid, id, COUNT(*) FROM salt_returns GROUP BY jid, id")
        return {(jid, minion): n for jid, minion, n in cur.fetchall()}


def loads_per_job(node, database):
    """``{jid: rows}`` of the ``jids`` table as ``node`` has it."""
    with node.connect(database) as conn, conn.cursor() as cur:
        cur.execute(CAUSAL_READS)
        cur.execute("SELECT jid, COUNT(*) FROM jids GROUP BY jid")
        return dict(cur.fetchall())


def scheduled_jids(event_listener, master, minion, since):
    """The jids of the scheduled returns ``master`` received since ``since``."""
    return {
        event.data["jid"]
        for event in event_listener.get_events(
            [(master.id, f"salt/job/*/ret/{minion.id}")], after_time=since
        )
        if event.data.get("schedule") == "to-every-master"
    }


def log_of(master):
    return Path(master.config["log_file"]).read_text(errors="replace")


def spool_of(master):
    return sorted(Path(master.config["cachedir"], "eventstore_spool").glob("*.json"))


def stored_by_all(masters, event_listener, minion, jids, since, timeout=60):
    """
    Every master's reactor's verdicts on the return of each of ``jids``
    (received after ``since``).
    """
    verdicts = {}
    for master in masters:
        reactions = Reactions(event_listener, master)
        reactions.since = since
        for jid in jids:
            verdicts.setdefault(jid, []).append(
                reactions.result(f"salt/job/{jid}/ret/{minion.id}", timeout)
            )
    return verdicts


def test_a_scheduled_return_reaching_every_master_is_stored_once(
    masters, minion, event_listener, galera, database
):
    since = time.time()
    deadline = since + 60
    while (
        len(scheduled_jids(event_listener, masters[0], minion, since)) < 3
        and time.time() < deadline
    ):
        time.sleep(0.5)
    jids = scheduled_jids(event_listener, masters[0], minion, since)
    assert len(jids) >= 3
    verdicts = stored_by_all(masters, event_listener, minion, jids, since)
    # One master stored each return, through its own node; the two others found
    # it stored: none spooled, none failed.
    assert {jid: sorted(v) for jid, v in verdicts.items()} == dict.fromkeys(
        jids, ["duplicate", "duplicate", "stored"]
    )
    rows = rows_per_return(galera.nodes[0], database)
    assert {rows[(jid, minion.id)] for jid in jids} == {1}
    assert {
        jid: n for jid, n in loads_per_job(galera.nodes[0], database).items() if jid in jids
    } == dict.fromkeys(jids, 1)
    for master in masters:
        assert spool_of(master) == []
        assert "unavailable" not in log_of(master)


def test_returns_go_on_through_the_next_node_when_a_masters_node_dies(
    masters, minion, event_listener, galera, database
):
    master = masters[0]
    reactions = Reactions(event_listener, master)
    with salt.client.get_local_client(master.config_file) as client:
        jids = [run_job(client, minion, "test.echo", [f"before {n}"])[0] for n in range(2)]
        galera.nodes[0].kill()
        jids += [run_job(client, minion, "test.echo", [f"after {n}"])[0] for n in range(4)]
    verdicts = [reactions.result(f"salt/job/{jid}/ret/{minion.id}") for jid in jids]
    assert verdicts == ["stored"] * 6
    rows = rows_per_return(galera.nodes[1], database)
    assert [rows.get((jid, minion.id)) for jid in jids] == [1] * 6
    log = log_of(master)
    assert log.count("storing into") == 1
    assert f"storing into {galera.hosts()[1]}" in log
    assert "unavailable" not in log
    assert spool_of(master) == []


def test_a_node_killed_and_rejoined_has_every_return_once(
    masters, minion, event_listener, galera, database
):
    since = time.time()
    node = galera.nodes[2]  # the third master's
    node.kill()
    with salt.client.get_local_client(masters[2].config_file) as client:
        jids = [run_job(client, minion, "test.echo", [f"node 3 down {n}"])[0] for n in range(3)]
    node.rejoin()
    galera.wait_synced()
    scheduled = scheduled_jids(event_listener, masters[0], minion, since)
    assert scheduled  # the schedule ran while the node was down
    stored_by_all(masters, event_listener, minion, scheduled, since)
    expected = {(jid, minion.id) for jid in [*jids, *scheduled]}
    # The schedule goes on meanwhile: compare the returns of this test only.
    for each in galera.nodes:
        rows = rows_per_return(each, database)
        assert {key: rows.get(key) for key in expected} == dict.fromkeys(expected, 1), each
    for master in masters:
        assert spool_of(master) == []
        assert "unavailable" not in log_of(master)
