"""
The runner in process, storing into a real three-node Galera cluster through
``eventstore: mysql_hosts``: certification conflicts are duplicates, not
outages; a dead node or one that takes no writes is left for the next.
"""

import logging

import pytest
from runnerlib import JID, count, load_runner, ret_event


def runner_on(galera, database, tmp_path, order=(0, 1, 2), user=None):
    """
    The runner storing into ``database`` through the nodes in ``order``,
    its tables made; as ``user`` (name, password) or the nodes' root.
    """
    name, password = user or (galera.nodes[0].user, galera.nodes[0].password)
    runner = load_runner(
        {
            "mysql.user": name,
            "mysql.pass": password,
            "mysql.db": database,
            "cachedir": str(tmp_path),
            "eventstore": {
                "mysql_hosts": [galera.hosts()[index] for index in order],
                "verify_returns": False,
            },
        }
    )
    runner.init()
    return runner


def events(minions, jid=JID):
    return [dict(zip(("tag", "data"), ret_event(minion=minion, jid=jid))) for minion in minions]


def write_meanwhile_on(node, database, minion, jid=JID):
    """
    Another master's store of the same return, on another node, committed
    while this runner's transaction is open: Galera certifies that one first.
    """
    with node.connect(database) as conn, conn.cursor() as cur:
        tag, data = ret_event(minion=minion, jid=jid)
        cur.execute(
            "INSERT INTO salt_returns (fun, jid, `return`, id, success, full_ret)"
            " VALUES ('test.ping', %s, 'true', %s, '1', '{}')",
            (jid, minion),
        )


def before_commit(runner, *actions):
    """
    Run the first of ``actions`` after the runner's INSERTs and before its
    COMMIT, the next one at its next try, and so on.
    """
    insert_new = runner.lib.store_mysql.MySQLStore._insert_new
    pending = list(actions)

    def hooked(self, cur, statement, params):
        added = insert_new(self, cur, statement, params)
        if pending:
            pending.pop(0)()
        return added

    runner.lib.store_mysql.MySQLStore._insert_new = hooked


def spooled(runner):
    return runner._runtime().writer.spool.names()


def warnings(caplog, text):
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@pytest.fixture
def es(galera, galera_database, tmp_path):
    return runner_on(galera, galera_database, tmp_path)


@pytest.fixture
def es_on_node_1(galera, galera_database, tmp_path):
    """
    The runner on the first node alone (as with ``mysql.host``), its
    connection open: another master writes on the other nodes.
    """
    runner = runner_on(galera, galera_database, tmp_path, order=(0,))
    runner.connection = runner._store()._connection()
    return runner


def test_a_return_another_master_stored_meanwhile_on_another_node_is_a_duplicate(
    es_on_node_1, galera, galera_database, caplog
):
    es = es_on_node_1
    before_commit(es, lambda: write_meanwhile_on(galera.nodes[1], galera_database, "web1"))
    with caplog.at_level(logging.WARNING):
        assert es.store(*ret_event(minion="web1")) == "duplicate"
    assert es._store()._connection() is es.connection  # tried again on it
    assert count(es) == 1
    assert spooled(es) == []
    assert warnings(caplog, "unavailable") == []


def test_an_engine_batch_that_conflicts_twice_in_a_row_stores_the_rest_once(
    es_on_node_1, galera, galera_database, caplog
):
    es = es_on_node_1
    before_commit(
        es,
        lambda: write_meanwhile_on(galera.nodes[2], galera_database, "m07"),
        lambda: write_meanwhile_on(galera.nodes[1], galera_database, "m13"),
    )
    with caplog.at_level(logging.WARNING):
        counts = es.store_events(events([f"m{n:02}" for n in range(20)]))
    assert (counts["stored"], counts["duplicate"], counts["spooled"]) == (18, 2, 0)
    assert es._store()._connection() is es.connection
    assert count(es) == 20
    assert warnings(caplog, "unavailable") == []


def test_a_killed_node_is_left_for_the_next_with_one_warning(es, galera, caplog):
    assert es.store(*ret_event(minion="before")) == "stored"
    galera.nodes[0].kill()
    with caplog.at_level(logging.WARNING):
        verdicts = [es.store(*ret_event(minion=f"after-{n}")) for n in range(5)]
    assert verdicts == ["stored"] * 5
    assert warnings(caplog, "storing into") == [
        f"eventstore: storing into {galera.hosts()[1]} from now on: {galera.hosts()[0]} failed"
        + warnings(caplog, "storing into")[0].split("failed", 1)[1]
    ]
    assert warnings(caplog, "unavailable") == []
    assert count(es) == 6


def test_the_store_stays_on_the_node_it_moved_to_after_the_first_rejoins(es, galera):
    es.store(*ret_event(minion="before"))
    galera.nodes[0].kill()
    es.store(*ret_event(minion="during"))
    galera.nodes[0].rejoin()
    galera.wait_synced()
    es._store()._drop_connection()  # as a restart of its connection would
    es.store(*ret_event(minion="after"))
    with es._store()._connection().cursor() as cur:
        cur.execute("SELECT @@port")
        assert cur.fetchone()[0] == galera.nodes[1].port


@pytest.fixture
def writer_user(galera, galera_database):
    """A user that may store, without the privilege to write on a read-only node."""
    user = ("es_writer", "es-writer-pw")
    with galera.nodes[0].connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", user)
        cur.execute(
            f"GRANT SELECT, INSERT, CREATE ON `{galera_database}`.* TO %s@'127.0.0.1'", user[:1]
        )
    yield user
    with galera.nodes[0].connect() as conn, conn.cursor() as cur:
        cur.execute("DROP USER %s@'127.0.0.1'", user[:1])


def test_a_read_only_node_is_left_for_the_next(
    galera, galera_database, writer_user, tmp_path, caplog
):
    es = runner_on(galera, galera_database, tmp_path, user=writer_user)
    first = galera.nodes[0]
    with first.connect() as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL read_only = 1")
    try:
        with caplog.at_level(logging.WARNING):
            assert es.store(*ret_event(minion="web1")) == "stored"
    finally:
        with first.connect() as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL read_only = 0")
    assert warnings(caplog, "storing into") and warnings(caplog, "unavailable") == []
    assert spooled(es) == []
