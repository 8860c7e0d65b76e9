"""
Engine mode: a real master running the eventstore engine (no reactor), a real
minion and a real MariaDB.
"""

import json
import time

import pytest
import salt.client
from saltlib import MODULE_DIR, engine_master_config, run_job
from test_hostile_minion import forge, forged_return


@pytest.fixture(scope="module")
def e2e_database(module_database):
    return module_database


@pytest.fixture(scope="module")
def engine_master(salt_factories, mysql_server, e2e_database):
    overrides = engine_master_config(mysql_server, e2e_database, batch_size=100, max_delay=0.1)
    factory = salt_factories.salt_master_daemon("es-engine-master", overrides=overrides)
    with factory.started():
        assert factory.salt_run_cli().run("eventstore.init").returncode == 0
        yield factory


@pytest.fixture(scope="module")
def engine_minion(engine_master):
    # Returns reach the master whole (see tests/e2e/conftest.py); its bus trims them.
    factory = engine_master.salt_minion_daemon(
        "es-engine-minion",
        overrides={"max_event_size": 8 * 1024 * 1024, "module_dirs": [str(MODULE_DIR)]},
    )
    with factory.started():
        yield factory


@pytest.fixture
def engine_client(engine_master):
    with salt.client.get_local_client(engine_master.config_file) as local:
        yield local


def rows_of(db, jid, expected=1, timeout=60):
    """
    The (minion, return) rows of a job once there are ``expected`` of them:
    the engine stores in its own time.
    """
    deadline = time.time() + timeout
    while True:
        with db.cursor() as cur:
            cur.execute("SELECT id, `return` FROM salt_returns WHERE jid = %s ORDER BY id", (jid,))
            rows = [(minion_id, json.loads(ret)) for minion_id, ret in cur.fetchall()]
        if len(rows) >= expected or time.time() > deadline:
            return rows
        time.sleep(0.2)


def test_returns_are_stored_one_row_each(engine_client, engine_minion, db):
    jobs = [
        run_job(engine_client, engine_minion, "test.ping"),
        run_job(engine_client, engine_minion, "test.echo", ["stored by the engine"]),
        run_job(engine_client, engine_minion, "cmd.run", ["echo grüße"]),
    ]
    for jid, ret in jobs:
        assert rows_of(db, jid) == [(engine_minion.id, ret)]


def test_the_job_load_is_stored(engine_client, engine_minion, db):
    jid, _ = run_job(engine_client, engine_minion, "test.arg", ["one"])
    rows_of(db, jid)
    with db.cursor() as cur:
        cur.execute("SELECT `load` FROM jids WHERE jid = %s", (jid,))
        load = json.loads(cur.fetchone()[0])
    assert (load["fun"], load["arg"], load["minions"]) == ("test.arg", ["one"], [engine_minion.id])


def test_a_3_mb_return_trimmed_on_the_bus_is_stored_whole(engine_client, engine_minion, db):
    jid, ret = run_job(engine_client, engine_minion, "cmd.run", ["printf '%03000000d' 0"])
    assert ret == "VALUE_TRIMMED"
    assert rows_of(db, jid) == [(engine_minion.id, "0" * 3_000_000)]


def test_a_return_holding_bytes_is_stored_which_the_reactor_cannot(
    engine_client, engine_minion, db, tmp_path
):
    path = tmp_path / "not-utf8"
    path.write_bytes(b"\xff\xfe ab")
    jid, ret = run_job(engine_client, engine_minion, "file.read", [str(path)], kwarg={"binary": True})
    ((_, stored),) = rows_of(db, jid)
    assert stored.encode("utf-8", "surrogateescape") == ret == b"\xff\xfe ab"


def test_a_return_nested_500_deep_is_stored_which_the_reactor_cannot(engine_client, engine_minion, db):
    jid, ret = run_job(engine_client, engine_minion, "eventstore_e2e.nested", [500])
    assert rows_of(db, jid) == [(engine_minion.id, ret)]


def test_a_forged_return_is_refused(engine_master, engine_client, engine_minion, db):
    jid, _ = run_job(engine_client, engine_minion, "test.ping")
    tag, data = forged_return(jid, "es-engine-victim")
    forge(engine_client, engine_minion, tag, data)
    # Stored after the forged event was read: its batch, or a later one.
    later, _ = run_job(engine_client, engine_minion, "test.ping")
    assert rows_of(db, later) == [(engine_minion.id, True)]
    assert [minion_id for minion_id, _ in rows_of(db, jid)] == [engine_minion.id]
    with open(engine_master.config["log_file"], encoding="utf-8", errors="replace") as log:
        assert f"not storing {tag}: the master job cache has no such return" in log.read()
