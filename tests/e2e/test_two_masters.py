"""
Two masters, one database: a multi-master minion connected to two real masters
that both run this reactor into the same MariaDB.

What Salt 3008 sends to both masters: a job published on one master returns to
that master only (each per-master Minion object skips the other's returns), but
a job from the minion's own schedule returns to every master (each one handles
the ``__schedule_return`` event).  With a returner set the run keeps its own jid
on every master; without one each master makes up its own jid.
"""

import json
import shutil
import time
from pathlib import Path

import pytest
import salt.client
from saltlib import Reactions, mysql_master_config, run_job

SCHEDULE = {
    # Any returner keeps the minion's jid for the run: without one the minion
    # sends jid "req" and every master makes up a jid of its own.
    "to-every-master": {
        "function": "test.echo",
        "args": ["scheduled"],
        "seconds": 3,
        "returner": "local",
    },
    "jid-per-master": {"function": "test.echo", "args": ["no returner"], "seconds": 3},
}


@pytest.fixture(scope="module")
def database(mysql_server):
    name = mysql_server.create_database()
    yield name
    mysql_server.drop_database(name)


def master_factory(salt_factories, master_id, mysql_server, database, **overrides):
    # As the server's user: our runner takes root's empty password (the mysql
    # returner would not).
    return salt_factories.salt_master_daemon(
        master_id, overrides={**mysql_master_config(mysql_server, database), **overrides}
    )


@pytest.fixture(scope="module")
def master_1(salt_factories, mysql_server, database):
    factory = master_factory(salt_factories, "es-mm-master-1", mysql_server, database)
    with factory.started():
        ret = factory.salt_run_cli().run("eventstore.init")
        assert ret.returncode == 0, ret
        yield factory


@pytest.fixture(scope="module")
def master_2(salt_factories, mysql_server, database, master_1):
    # Another host: a minion tells its masters apart by host alone, so two
    # masters on one address would both get every return.
    factory = master_factory(
        salt_factories, "es-mm-master-2", mysql_server, database, interface="127.0.0.2"
    )
    # Multi-master needs one key pair on all masters: the minion keeps a single
    # minion_master.pub.
    pki_dir = Path(factory.config["pki_dir"])
    pki_dir.mkdir(parents=True, exist_ok=True)
    for name in ("master.pem", "master.pub"):
        shutil.copy(Path(master_1.config["pki_dir"]) / name, pki_dir / name)
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def minion(master_1, master_2, event_listener):
    # salt-factories accepts the pending key on each master as it authenticates.
    factory = master_1.salt_minion_daemon(
        "es-mm-minion",
        overrides={
            "master": [
                f"{m.config['interface']}:{m.config['ret_port']}" for m in (master_1, master_2)
            ],
            "schedule": SCHEDULE,
        },
    )
    since = time.time()
    with factory.started():
        # started() waits for master 1 only.
        started = event_listener.wait_for_events(
            [(master_2.id, f"salt/minion/{factory.id}/start")], after_time=since, timeout=60
        )
        assert started.found_all_events, f"{factory.id} did not start on {master_2.id}"
        yield factory


@pytest.fixture
def db(mysql_server, database):
    conn = mysql_server.connect(database)
    yield conn
    conn.close()


def scheduled_return(event_listener, master, minion, schedule, since, timeout=30, pid=None):
    """
    The first return of the minion's ``schedule`` job that ``master`` received
    after ``since`` (with ``pid``: of that run).
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = [
            event
            for event in event_listener.get_events(
                [(master.id, f"salt/job/*/ret/{minion.id}")], after_time=since
            )
            if event.data.get("schedule") == schedule and pid in (None, event.data.get("pid"))
        ]
        if found:
            return min(found, key=lambda event: event.stamp).data
        time.sleep(0.2)
    raise AssertionError(f"{master.id} got no return of the schedule {schedule} within {timeout} s")


def rows(db, jid, minion_id):
    with db.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM salt_returns WHERE jid = %s AND id = %s", (jid, minion_id)
        )
        return cur.fetchone()[0]


def test_return_reaching_both_masters_is_stored_once(
    master_1, master_2, minion, event_listener, db
):
    reactions = [Reactions(event_listener, master) for master in (master_1, master_2)]
    ret = scheduled_return(event_listener, master_1, minion, "to-every-master", reactions[0].since)
    tag = f"salt/job/{ret['jid']}/ret/{minion.id}"
    # One master stores it, the other finds it stored.
    assert sorted(reaction.result(tag) for reaction in reactions) == ["duplicate", "stored"]
    assert rows(db, ret["jid"], minion.id) == 1


def test_a_scheduled_job_is_stored_with_its_load_once(
    master_1, master_2, minion, event_listener, db
):
    # No salt/job/<jid>/new event announces it: its load comes with the return.
    reactions = [Reactions(event_listener, master) for master in (master_1, master_2)]
    ret = scheduled_return(event_listener, master_1, minion, "to-every-master", reactions[0].since)
    for reaction in reactions:
        reaction.result(f"salt/job/{ret['jid']}/ret/{minion.id}")
    with db.cursor() as cur:
        cur.execute("SELECT `load` FROM jids WHERE jid = %s", (ret["jid"],))
        (load,) = [json.loads(row[0]) for row in cur.fetchall()]
    assert (load["fun"], load["schedule"]) == ("test.echo", "to-every-master")


def test_job_published_on_one_master_returns_to_it_alone(
    master_1, master_2, minion, event_listener, db
):
    since = time.time()
    reactions = Reactions(event_listener, master_1)
    with salt.client.get_local_client(master_1.config_file) as local:
        jid, _ = run_job(local, minion, "test.echo", ["published on master 1"])
    tag = f"salt/job/{jid}/ret/{minion.id}"
    assert reactions.result(tag) == "stored"
    # Master 2 would have had it at the same moment as master 1.
    time.sleep(2)
    assert not event_listener.get_events([(master_2.id, tag)], after_time=since)
    assert rows(db, jid, minion.id) == 1


def test_scheduled_run_without_returner_is_stored_under_each_masters_jid(
    master_1, master_2, minion, event_listener, db
):
    # A limit, not a wish: the two copies share no key, so both are stored.
    reactions = [Reactions(event_listener, master) for master in (master_1, master_2)]
    since = reactions[0].since
    ret_1 = scheduled_return(event_listener, master_1, minion, "jid-per-master", since)
    # The same run: the same scheduler process sent both.
    ret_2 = scheduled_return(
        event_listener, master_2, minion, "jid-per-master", since, pid=ret_1["pid"]
    )
    assert ret_1["jid"] != ret_2["jid"]
    for reaction, ret in zip(reactions, (ret_1, ret_2)):
        assert reaction.result(f"salt/job/{ret['jid']}/ret/{minion.id}") == "stored"
        assert rows(db, ret["jid"], minion.id) == 1
