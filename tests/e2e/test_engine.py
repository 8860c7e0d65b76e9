"""
Engine mode: a real master running the eventstore engine (no reactor), a real
minion and a real MariaDB.
"""

import contextlib
import json
import threading
import time

import pytest
import salt.client
import salt.utils.event
import salt.version
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
    jid, ret = run_job(
        engine_client, engine_minion, "file.read", [str(path)], kwarg={"binary": True}
    )
    ((_, stored),) = rows_of(db, jid)
    assert stored.encode("utf-8", "surrogateescape") == ret == b"\xff\xfe ab"


def test_a_return_nested_500_deep_is_stored_which_the_reactor_cannot(
    engine_client, engine_minion, db
):
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


# ---------------------------------------------------------------------------
# The engine's life in a master of its own per test: stopped, held up by the
# database, cut off from the bus.  The database is held up with LOCK TABLES
# (the engine's INSERT waits), so a test decides when storing may go on.
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def engine_of_its_own(salt_factories, mysql_server, name, **engine):
    """A master running the engine with ``engine`` settings, a minion and a database of their own."""
    database = mysql_server.create_database()
    overrides = engine_master_config(mysql_server, database, **engine)
    master = salt_factories.salt_master_daemon(f"es-{name}-master", overrides=overrides)
    try:
        with master.started():
            assert master.salt_run_cli().run("eventstore.init").returncode == 0
            minion = master.salt_minion_daemon(f"es-{name}-minion")
            with minion.started():
                with salt.client.get_local_client(master.config_file) as client:
                    yield master, minion, client, mysql_server.connect(database)
    finally:
        mysql_server.drop_database(database)


class TablesLocked:
    """
    The eventstore tables locked by a connection of the test's own until
    ``unlock()`` (or the end of the ``with`` block: a lock left would hang
    the DROP DATABASE after the test).
    """

    def __init__(self, mysql_server, db):
        self.conn = mysql_server.connect(db.db.decode())
        with self.conn.cursor() as cur:
            cur.execute("LOCK TABLES jids WRITE, salt_returns WRITE, eventstore_dead_letters WRITE")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.conn.open:
            self.unlock()

    def engine_waits(self, timeout=60):
        """Wait until a session (the engine's writer) waits for the lock."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.conn.cursor() as cur:
                cur.execute(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                    " WHERE STATE LIKE 'Waiting for table%%' AND INFO LIKE 'INSERT%%'"
                )
                if cur.fetchone()[0]:
                    return
            time.sleep(0.2)
        raise AssertionError(f"the engine did not try to store within {timeout} s")

    def unlock(self):
        with self.conn.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        self.conn.close()


def wait_for_log(master, text, timeout=60):
    """Wait until the master log holds ``text``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(master.config["log_file"], encoding="utf-8", errors="replace") as log:
            if text in log.read():
                return
        time.sleep(0.2)
    raise AssertionError(f"not in the master log within {timeout} s: {text}")


def test_what_is_queued_is_stored_when_the_master_stops(salt_factories, mysql_server):
    with engine_of_its_own(salt_factories, mysql_server, "stop", stop_timeout=4) as setup:
        master, minion, client, db = setup
        with TablesLocked(mysql_server, db) as lock:
            jobs = [run_job(client, minion, "test.echo", [f"queued {n}"]) for n in range(3)]
            lock.engine_waits()  # so nothing was stored before the stop
            stopping = threading.Thread(target=master.terminate)
            stopping.start()
            # SIGTERM reached the engine: now the database takes rows again.
            wait_for_log(master, "eventstore engine: stopping")
            lock.unlock()
            stopping.join()
        for jid, ret in jobs:
            assert rows_of(db, jid, timeout=0) == [(minion.id, ret)]
        with open(master.config["log_file"], encoding="utf-8", errors="replace") as log:
            assert "events not stored" not in log.read()


def test_the_reader_stops_reading_while_the_queue_is_full(salt_factories, mysql_server):
    # A queue of one event (each is bigger than 100 bytes).
    with engine_of_its_own(salt_factories, mysql_server, "full", queue_mib=0.0001) as setup:
        master, minion, client, db = setup
        with TablesLocked(mysql_server, db) as lock:
            jobs = [run_job(client, minion, "test.echo", [f"waiting {n}"]) for n in range(4)]
            wait_for_log(master, "eventstore engine: the queue is full")
            lock.unlock()
        # What the reader left in the publisher meanwhile is read and stored now.
        for jid, ret in jobs:
            assert rows_of(db, jid) == [(minion.id, ret)]


#: Salt 3007's event publisher passed no undecodable event on to its subscribers
#: in CI (the engine never logged one), 3006's and 3008's do; on 3007 the test
#: still shows that the engine stores the next job after the garbage was sent.
UNDECODABLE_EVENTS_REACH_SUBSCRIBERS = salt.version.__saltstack_version__.major != 3007


def test_the_engine_carries_on_after_an_event_it_cannot_decode(salt_factories, mysql_server):
    with engine_of_its_own(salt_factories, mysql_server, "garbage") as setup:
        master, minion, client, db = setup
        bus = salt.utils.event.get_master_event(
            master.config, master.config["sock_dir"], listen=False
        )
        with bus:
            assert bus.connect_pull(timeout=30)
            tag = "salt/job/20261126120000000000/ret/es-garbage-minion"
            # The pusher's send is called publish from 3007 on.
            send = getattr(bus.pusher, "publish", None) or bus.pusher.send
            send(tag.encode() + salt.utils.event.TAGEND.encode() + b"\xc1 not msgpack")
            if UNDECODABLE_EVENTS_REACH_SUBSCRIBERS:
                # Open until the engine has it: closing at once may drop what is unsent.
                wait_for_log(master, "eventstore engine: skipping an event it cannot decode")
        jid, ret = run_job(client, minion, "test.echo", ["after the garbage"])
        assert rows_of(db, jid) == [(minion.id, ret)]
