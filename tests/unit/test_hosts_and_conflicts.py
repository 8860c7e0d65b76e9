"""
Several database hosts (``eventstore: mysql_hosts``) and transactions that lose
to other writers (deadlocks, Galera certification conflicts, lock wait
timeouts): the decisions, without a server.  tests/galera/ runs them on a real
Galera cluster.
"""

import logging

import pymysql
import pytest
from runnerlib import load_runner
from saltext.eventstore.config import resolve_config

DEADLOCK = pymysql.err.OperationalError(
    1213, "Deadlock found when trying to get lock; try restarting transaction"
)
LOCK_WAIT = pymysql.err.OperationalError(
    1205, "Lock wait timeout exceeded; try restarting transaction"
)
NOT_PREPARED = pymysql.err.OperationalError(
    1047, "WSREP has not yet prepared node for application use"
)
READ_ONLY = pymysql.err.OperationalError(
    1290,
    "The MariaDB server is running with the --read-only option so it cannot execute this statement",
)
REFUSED = pymysql.err.OperationalError(
    2003, "Can't connect to MySQL server on '10.0.0.1' ([Errno 111])"
)
LOST = pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")
DUPLICATE = pymysql.err.IntegrityError(1062, "Duplicate entry")

# Errors are checked by what they are, never with pytest.raises(pymysql.err.X):
# once Salt's mysql returner has run pymysql.install_as_MySQLdb() in this
# process (other tests load it), pymysql.err can be another copy of the module.


def config(opts):
    return resolve_config(opts)


# --- the host list -----------------------------------------------------------


def test_mysql_hosts_are_kept_in_order_with_mysql_port_unless_given():
    cfg = config({"mysql.port": 3307, "eventstore": {"mysql_hosts": ["db1", "db2:3310", "db3"]}})
    assert cfg.mysql["hosts"] == (("db1", 3307), ("db2", 3310), ("db3", 3307))


def test_mysql_hosts_alone_select_mysql():
    assert config({"eventstore": {"mysql_hosts": ["db1"]}}).backend == "mysql"


def test_without_mysql_hosts_the_one_host_is_mysql_host():
    assert config({"mysql.host": "db1", "mysql.port": 3307}).mysql["hosts"] == (("db1", 3307),)


def test_a_host_list_may_be_one_string_separated_by_commas():
    cfg = config({"eventstore": {"mysql_hosts": "db1:3306, db2:3307"}})
    assert cfg.mysql["hosts"] == (("db1", 3306), ("db2", 3307))


def test_an_ipv6_address_takes_a_port_in_brackets():
    cfg = config({"eventstore": {"mysql_hosts": ["[fd00::1]:3307", "fd00::2"]}})
    assert cfg.mysql["hosts"] == (("fd00::1", 3307), ("fd00::2", 3306))


@pytest.mark.parametrize("entry", ["db1:port", "db1:0", "db1:70000", "db 1", ""])
def test_a_bad_host_entry_keeps_the_runner_from_loading_and_is_named(entry):
    es = load_runner({"eventstore": {"mysql_hosts": ["db0", entry]}})
    loaded, reason = es.__virtual__()
    assert loaded is False
    assert "mysql_hosts" in reason and repr(entry) in reason


def test_the_database_is_named_with_every_host_and_no_password():
    es = load_runner({"mysql.pass": "s3cret", "eventstore": {"mysql_hosts": ["db1", "db2:3307"]}})
    store = es.lib.store_mysql.MySQLStore(es.lib.config.resolve_config(es.__opts__))
    assert store.describe() == "mysql://salt@db1:3306,db2:3307/salt"


# --- what a MySQL error means ------------------------------------------------

es_module = load_runner({})


@pytest.mark.parametrize(
    "exc",
    [
        DEADLOCK,
        LOCK_WAIT,
        pymysql.err.OperationalError(
            3101, "Plugin instructed the server to rollback the current transaction."
        ),
    ],
)
def test_deadlocks_certification_conflicts_and_lock_waits_are_conflicts(exc):
    assert es_module.lib.store_mysql.is_mysql_conflict(exc)
    assert not es_module.lib.store_mysql.is_mysql_not_ready(exc)


@pytest.mark.parametrize("exc", [NOT_PREPARED, READ_ONLY])
def test_a_galera_node_not_prepared_and_a_read_only_server_are_not_ready(exc):
    assert es_module.lib.store_mysql.is_mysql_not_ready(exc)
    assert not es_module.lib.store_mysql.is_mysql_conflict(exc)


@pytest.mark.parametrize("exc", [REFUSED, LOST, DUPLICATE, ValueError(1213), OSError(1047, "x")])
def test_other_errors_are_neither_conflicts_nor_a_node_not_ready(exc):
    assert not es_module.lib.store_mysql.is_mysql_conflict(exc)
    assert not es_module.lib.store_mysql.is_mysql_not_ready(exc)


def test_the_pause_after_a_conflict_doubles_with_jitter_around_it():
    pause = es_module.lib.store.conflict_pause
    base = es_module.lib.store.CONFLICT_PAUSE
    assert [pause(attempt, 0.5) for attempt in (1, 2, 3)] == [base, 2 * base, 4 * base]
    assert (pause(1, 0.0), pause(1, 0.999)) == (base * 0.5, pytest.approx(base * 1.499))


# --- the store, on connections that fail as told -----------------------------


class FakeConnection:
    """
    A connection to ``store``'s ``host``: each commit raises the next of the
    host's errors in ``store.commit_errors``, if any.
    """

    def __init__(self, store, host):
        self.store = store
        self.host = host
        self.commits = self.rollbacks = 0

    def cursor(self):
        return self

    def execute(self, statement, params=None):
        pass

    def close(self):
        pass

    def commit(self):
        self.commits += 1
        errors = self.store.commit_errors.get(self.host)
        if errors:
            raise errors.pop(0)

    def rollback(self):
        self.rollbacks += 1


@pytest.fixture
def es(tmp_path):
    module = load_runner(
        {"cachedir": str(tmp_path), "eventstore": {"mysql_hosts": ["db1", "db2", "db3"]}}
    )
    module.lib.store.CONFLICT_PAUSE = 0  # no real pauses in unit tests
    return module


def fake_store(es, down=(), commit_errors=None):
    """
    A MySQL store on db1, db2 and db3 whose hosts in ``down`` refuse
    connections and whose commits on a host raise that host's
    ``commit_errors``, one each, in turn.
    """

    class Store(es.lib.store_mysql.MySQLStore):
        def connect_to(self, host):
            self.tried.append(host[0])
            if host[0] in self.down:
                raise REFUSED
            conn = FakeConnection(self, host[0])
            self.connections.append(conn)
            return conn

    store = Store(es.lib.config.resolve_config(es.__opts__))
    store.tried, store.connections = [], []
    store.down, store.commit_errors = (
        set(down),
        {host: list(e) for host, e in (commit_errors or {}).items()},
    )
    return store


def test_a_conflict_is_run_again_on_the_same_connection(es):
    store = fake_store(es, commit_errors={"db1": [DEADLOCK, LOCK_WAIT]})
    calls = []
    assert store.run(lambda cur: calls.append(cur) or "done") == "done"
    (conn,) = store.connections
    assert (len(calls), conn.commits, conn.rollbacks) == (3, 3, 2)


def test_a_conflict_that_outlasts_the_retries_is_raised(es):
    store = fake_store(es, commit_errors={"db1": [DEADLOCK] * (es.lib.store.CONFLICT_RETRIES + 1)})
    with pytest.raises(Exception) as raised:  # noqa: PT011 (see below)
        store.run(lambda cur: None)
    assert raised.value.args[0] == 1213
    assert store.connections[0].commits == es.lib.store.CONFLICT_RETRIES + 1


def test_the_first_host_that_answers_is_used(es):
    store = fake_store(es, down={"db1"})
    store.run(lambda cur: None)
    assert store.tried == ["db1", "db2"]


def test_a_node_that_is_not_ready_sends_the_transaction_to_the_next_host(es):
    store = fake_store(es, commit_errors={"db1": [NOT_PREPARED]})
    store.run(lambda cur: None)
    assert [conn.host for conn in store.connections] == ["db1", "db2"]
    assert store.connections[1].commits == 1


def test_a_read_only_server_sends_the_transaction_to_the_next_host(es):
    store = fake_store(es, commit_errors={"db1": [READ_ONLY]})
    store.run(lambda cur: None)
    assert [conn.host for conn in store.connections] == ["db1", "db2"]


def test_a_lost_connection_moves_on_when_its_host_is_gone(es):
    store = fake_store(es)
    store.run(lambda cur: None)
    store.down.add("db1")  # killed: its connection is lost at the next commit
    store.commit_errors["db1"] = [LOST]
    store.run(lambda cur: None)
    assert store.tried == ["db1", "db1", "db2"]


def test_the_store_stays_on_the_host_it_moved_to(es):
    store = fake_store(es, down={"db1"})
    store.run(lambda cur: None)
    store._drop_connection()  # as after an idle timeout; db1 is back meanwhile
    store.tried.clear()
    store.run(lambda cur: None)
    assert store.tried == ["db2"]


def test_the_host_moved_to_is_where_the_runner_starts_when_loaded_again(es):
    # The reactor loads its runners anew every minute; a master restarts.
    fake_store(es, down={"db1"}).run(lambda cur: None)
    again = fake_store(es)
    again.run(lambda cur: None)
    assert again.tried == ["db2"]


def test_a_remembered_host_no_longer_listed_is_forgotten(es, tmp_path):
    fake_store(es, down={"db1"}).run(lambda cur: None)
    es.__opts__["eventstore"]["mysql_hosts"] = ["db1", "db3"]
    again = fake_store(es)
    again.run(lambda cur: None)
    assert again.tried == ["db1"]


def test_moving_to_another_host_is_logged_once_with_the_reason(es, caplog):
    store = fake_store(es, down={"db1"})
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            store.run(lambda cur: None)
            store._drop_connection()
    (record,) = [r for r in caplog.records if "storing into" in r.getMessage()]
    assert record.getMessage() == (
        "eventstore: storing into db2:3306 from now on: db1:3306 failed "
        "((2003, \"Can't connect to MySQL server on '10.0.0.1' ([Errno 111])\"))"
    )


def test_when_no_host_answers_the_first_hosts_error_is_raised(es):
    store = fake_store(es, down={"db1", "db2", "db3"})
    with pytest.raises(Exception) as raised:  # noqa: PT011 (see below)
        store.run(lambda cur: None)
    assert raised.value is REFUSED
    assert store.tried == ["db1", "db2", "db3"]


def test_when_every_host_is_not_ready_the_error_is_raised(es):
    store = fake_store(
        es, commit_errors={"db1": [READ_ONLY] * 2, "db2": [READ_ONLY], "db3": [READ_ONLY]}
    )
    with pytest.raises(Exception) as raised:  # noqa: PT011 (see below)
        store.run(lambda cur: None)
    assert raised.value.args[0] == 1290
    assert [conn.host for conn in store.connections] == ["db1", "db2", "db3", "db1"]


# --- the writer: conflicts are no outage --------------------------------------


def test_rows_that_conflict_past_the_retries_are_spooled_without_an_outage(es, tmp_path, caplog):
    store = fake_store(es, commit_errors={"db1": [DEADLOCK] * (es.lib.store.CONFLICT_RETRIES + 1)})
    store._packet = 16 * 1024 * 1024  # no SELECT @@max_allowed_packet on the fake
    writer = es.lib.writer.Writer(store, es.lib.spool.Spool(str(tmp_path / "spool")))
    row = es.lib.rows.LoadRow("20261126120000000000", "{}")
    with caplog.at_level(logging.WARNING):
        assert writer.write(row) == "spooled"
    assert writer._outage is None
    assert not [r for r in caplog.records if "unavailable" in r.getMessage()]
    # The next store writes it back: no pause, as after an outage.
    assert writer.write(es.lib.rows.LoadRow("20261126120000000001", "{}")) == "stored"
    assert writer.spool.names() == []
