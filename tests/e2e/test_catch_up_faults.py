"""
Faults through a real master, minion, reactor and MariaDB, each with nothing
lost and nothing doubled, and nobody running backfill or replay: catch-up
rounds (every 2 s here, for returns older than 1 s) store what the master's
job cache holds and the database lacks.
"""

import os
import shutil
import signal
import time

import psutil
import pytest
import salt.client
import salt.loader
from runnerlib import REPO
from saltlib import Reactions, mysql_master_config, run_job_retried

#: Short rounds, so that no test waits minutes.
CATCH_UP = {"catch_up_interval": 2, "catch_up_after": 1}


@pytest.fixture(scope="module")
def database(own_mysql_server):
    """A database and a user of its own, without SUPER: read_only applies to it."""
    server = own_mysql_server
    name = server.create_database()
    user, password = name[-16:], "catch-up-pw"
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
        cur.execute(f"GRANT ALL ON `{name}`.* TO %s@'%%'", (user,))
    yield server, name, user, password
    if server.proc is None:
        server.resume()
    server.drop_database(name)


def catch_up_config(server, name, user, password, engine=True, **extra):
    """Reactor mode; with ``engine``, the engine runs catch-up rounds only."""
    config = mysql_master_config(server, name, user, password)
    config["eventstore"] = dict(CATCH_UP)
    if engine:
        config.update(
            engines_dirs=[str(REPO / "_engines")], engines=[{"eventstore": {"store": False}}]
        )
    config.update(extra)
    return config


@pytest.fixture(scope="module")
def setup(salt_factories, database):
    master = salt_factories.salt_master_daemon(
        "es-catch-up-master", overrides=catch_up_config(*database)
    )
    with master.started():
        assert master.salt_run_cli().run("eventstore.init").returncode == 0
        minion = master.salt_minion_daemon("es-catch-up-minion")
        with minion.started():
            yield master, minion, database[0], database[1]


def job_cache_returns(master, jids):
    """``{(jid, minion)}`` the master's job cache holds for ``jids``."""
    returners = salt.loader.returners(master.config, {})
    return {(jid, minion) for jid in jids for minion in returners["local_cache.get_jid"](jid)}


def stored_rows(server, name, jids):
    """``[(jid, minion), ...]`` stored for ``jids``, one entry per row."""
    with server.connect(name) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT jid, id FROM salt_returns WHERE jid IN ({', '.join(['%s'] * len(jids))})", jids
        )
        return sorted(cur.fetchall())


def wait_until_stored(server, name, expected, timeout=90):
    """Wait until exactly ``expected`` rows are stored for their jobs: nothing lost, nothing doubled."""
    jids = sorted({jid for jid, _ in expected})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = stored_rows(server, name, jids)
        if len(rows) >= len(expected):
            break
        time.sleep(0.5)
    assert rows == sorted(expected)


def publish(client, minion, count, prefix):
    return [client.cmd_async(minion.id, "test.echo", [f"{prefix} {n}"]) for n in range(count)]


def wait_for_job_cache(master, jids, timeout=60):
    deadline = time.monotonic() + timeout
    while len(job_cache_returns(master, jids)) < len(jids):
        assert time.monotonic() < deadline, "the minion did not return"
        time.sleep(0.2)
    return job_cache_returns(master, jids)


def master_processes(master, title=None):
    main = psutil.Process(master.pid)
    procs = [main, *main.children(recursive=True)]
    if title is None:
        return procs
    return [proc for proc in procs if all(part in " ".join(proc.cmdline()) for part in title)]


def reconnected(master, minion, timeout=120):
    """Wait until the minion answers the master again (after the master's restart)."""
    deadline = time.monotonic() + timeout
    with salt.client.get_local_client(master.config_file) as client:
        while not client.cmd(minion.id, "test.ping", timeout=5):
            assert time.monotonic() < deadline, f"{minion.id} did not come back to the master"


@pytest.fixture
def database_down(setup):
    """Stop the database for the test (started again after it, whatever happens)."""
    master, minion, server, _ = setup
    reconnected(master, minion)
    server.pause()
    try:
        yield server.resume
    finally:
        if server.proc is None:
            server.resume()


def master_log(master):
    with open(master.config["log_file"], encoding="utf-8", errors="replace") as log:
        return log.read()


def test_returns_queued_in_the_reactor_when_the_master_is_killed_are_stored_after_it_starts(setup):
    master, minion, server, name = setup
    # Nothing stores from now on: the master's engine processes (the reactor,
    # the eventstore engine, salt-factories' event forwarder: their titles are
    # cut short) are frozen while the master writes the returns to its job
    # cache; then it dies at once.
    frozen = master_processes(master, ["Engine("])
    assert len(frozen) == 3
    for proc in frozen:
        proc.send_signal(signal.SIGSTOP)
    with salt.client.get_local_client(master.config_file) as client:
        jids = publish(client, minion, 10, "killed")
        expected = wait_for_job_cache(master, jids)
    for proc in master_processes(master):
        proc.kill()
    master.terminate()
    assert stored_rows(server, name, jids) == []  # the reactions died with the master
    master.start()
    wait_until_stored(server, name, expected)
    reconnected(master, minion)


def test_rows_spooled_when_the_master_stops_are_written_back_after_it_starts(setup, event_listener):
    master, minion, server, name = setup
    reconnected(master, minion)
    reactions = Reactions(event_listener, master)
    server.pause()
    try:
        with salt.client.get_local_client(master.config_file) as client:
            jids = [
                run_job_retried(client, minion, "test.echo", [f"spooled {n}"])[0] for n in range(3)
            ]
        assert [reactions.result(f"salt/job/{jid}/ret/{minion.id}") for jid in jids] == [
            "spooled"
        ] * 3
        master.terminate()
    finally:
        server.resume()
    master.start()
    wait_until_stored(server, name, [(jid, minion.id) for jid in jids])
    reconnected(master, minion)
    assert os.listdir(os.path.join(master.config["cachedir"], "eventstore_spool")) == []


def test_a_database_turned_read_only_gets_rows_spooled_then_written_back(setup, event_listener):
    master, minion, server, name = setup
    reconnected(master, minion)
    reactions = Reactions(event_listener, master)
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL read_only = 1")  # a failover: the master's user has no SUPER
        try:
            with salt.client.get_local_client(master.config_file) as client:
                jid, _ = run_job_retried(client, minion, "test.echo", ["read-only"])
            assert reactions.result(f"salt/job/{jid}/ret/{minion.id}") == "spooled"
        finally:
            cur.execute("SET GLOBAL read_only = 0")
    wait_until_stored(server, name, [(jid, minion.id)])
    with server.connect(name) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM eventstore_dead_letters")
        assert cur.fetchone() == (0,)


@pytest.fixture
def unwritable_spool(setup):
    """The spool folder replaced by a file until the fixture's ``end()``: no row can be spooled."""
    master, *_ = setup
    spool = os.path.join(master.config["cachedir"], "eventstore_spool")
    aside = spool + ".aside"
    os.makedirs(spool, exist_ok=True)
    os.rename(spool, aside)
    with open(spool, "w") as blocker:
        blocker.write("not a folder")

    class Spool:
        @staticmethod
        def end():
            if os.path.isfile(spool):
                os.unlink(spool)
                os.rename(aside, spool)

    yield Spool
    Spool.end()
    shutil.rmtree(aside, ignore_errors=True)


def test_returns_neither_stored_nor_spooled_are_caught_up_once_there_is_room(
    setup, event_listener, unwritable_spool, database_down
):
    master, minion, server, name = setup
    reactions = Reactions(event_listener, master)
    with salt.client.get_local_client(master.config_file) as client:
        lost, _ = run_job_retried(client, minion, "test.echo", ["nowhere to go"])
        assert reactions.result(f"salt/job/{lost}/ret/{minion.id}") == "failed"
        assert "could not store nor spool" in master_log(master)
        status = master.salt_run_cli().run("eventstore.status")
        assert status.returncode == 1
        assert "spool cannot be written" in status.stdout, status
        unwritable_spool.end()
        spooled, _ = run_job_retried(client, minion, "test.echo", ["room again"])
        assert reactions.result(f"salt/job/{spooled}/ret/{minion.id}") == "spooled"
    database_down()  # up again
    wait_until_stored(server, name, [(lost, minion.id), (spooled, minion.id)])


@pytest.fixture(scope="module")
def small_reactor(salt_factories, database):
    """
    A reactor with one thread and room for one waiting reaction, and no
    engine: the catch-up thread is the one a reaction starts in the reactor.
    """
    overrides = catch_up_config(
        *database, engine=False, reactor_worker_threads=1, reactor_worker_hwm=1
    )
    master = salt_factories.salt_master_daemon("es-small-reactor-master", overrides=overrides)
    with master.started():
        minion = master.salt_minion_daemon("es-small-reactor-minion")
        with minion.started():
            yield master, minion, database[0], database[1]


def test_reactions_dropped_because_the_reactor_queue_is_full_are_stored(small_reactor):
    master, minion, server, name = small_reactor
    with salt.client.get_local_client(master.config_file) as client:
        jids = publish(client, minion, 20, "burst")
        expected = wait_for_job_cache(master, jids)
    wait_until_stored(server, name, expected)
    assert "TaskPool queue is full" in master_log(master)  # reactions were dropped
    status = master.salt_run_cli().run("eventstore.status")
    assert status.data["catch_up"]["last_round_that_stored"]["stored"]["returns"] > 0
