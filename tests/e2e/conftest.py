"""
A real salt-master with this reactor and runner, a real salt-minion, and a real
MariaDB (pytest-salt-factories: Salt's own test harness).
"""

import pytest
import salt.client
from saltlib import MODULE_DIR, Reactions, mysql_master_config


@pytest.fixture(scope="package")
def e2e_database(mysql_server):
    name = mysql_server.create_database()
    yield name
    mysql_server.drop_database(name)


@pytest.fixture(scope="module")
def module_database(mysql_server):
    """
    A database for a master of the test module's own; a module that names it
    its ``e2e_database`` gets the ``db`` fixture on it.
    """
    name = mysql_server.create_database()
    yield name
    mysql_server.drop_database(name)


@pytest.fixture(scope="package")
def e2e_user(mysql_server, e2e_database):
    """
    A database user of its own with a password, as on a real master (the mysql
    returner cannot even use an empty password: it falls back to 'salt').
    """
    user, password = e2e_database[-16:], "eventstore-e2e-pw"
    conn = mysql_server.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
        cur.execute(f"GRANT ALL ON `{e2e_database}`.* TO %s@'%%'", (user,))
    yield user, password
    with conn.cursor() as cur:
        cur.execute("DROP USER %s@'%%'", (user,))
    conn.close()


@pytest.fixture(scope="package")
def master(salt_factories, mysql_server, e2e_database, e2e_user):
    overrides = {
        **mysql_master_config(mysql_server, e2e_database, *e2e_user),
        # Long, so that a test telling a waited-for forgery from one refused
        # at once needs no tight timeout (test_hostile_minion.py).
        "eventstore": {"job_cache_wait": 3600},
        # API users allowed parts of the runner only (test_operations.py),
        # as docs/operations.md shows; "auto" lets any password in.
        "external_auth": {
            "auto": {
                "ops": [{"@runner": ["eventstore\\.status", "eventstore\\.jobs"]}],
                "webteam": [{"@runner": [{"eventstore\\.query": {"kwargs": {"minion": "web"}}}]}],
            }
        },
    }
    factory = salt_factories.salt_master_daemon("es-master", overrides=overrides)
    with factory.started():
        ret = factory.salt_run_cli().run("eventstore.init")
        assert ret.returncode == 0, ret
        yield factory


@pytest.fixture(scope="package")
def minion(master):
    # A minion trims its own returns over max_event_size (1 MiB) before they
    # leave it; with it raised, the master gets them whole, its job cache keeps
    # them whole, and only the master's event bus trims them.  40 MiB: more
    # than a mediumtext column holds (test_hostile_returns.py).
    overrides = {"max_event_size": 40 * 1024 * 1024, "module_dirs": [str(MODULE_DIR)]}
    factory = master.salt_minion_daemon("es-minion-1", overrides=overrides)
    with factory.started():
        yield factory


@pytest.fixture
def client(master):
    # One per test: a client left idle while other modules run stops seeing
    # events (its subscription fills up and is dropped).
    with salt.client.get_local_client(master.config_file) as local:
        yield local


@pytest.fixture
def db(mysql_server, e2e_database):
    conn = mysql_server.connect(e2e_database)
    yield conn
    conn.close()


@pytest.fixture
def reactions(event_listener, master):
    return Reactions(event_listener, master)
