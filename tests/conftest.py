"""Fixtures and hooks shared by every test tier: a MySQL/MariaDB or PostgreSQL database per test, and CI strictness."""

import os
import shutil
import sys
import tempfile

import pytest

# `mysqlserver` sits next to this file; make it importable whatever --import-mode is used.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mysqlserver  # noqa: E402
import pgserver  # noqa: E402
from runnerlib import mysql_keys, pgjsonb_keys  # noqa: E402


@pytest.fixture(scope="session")
def salt_factories_config():
    """
    For the tiers with real Salt daemons (e2e, galera): a root directory of
    this session's own for the daemons and their launch scripts.  By default salt-factories shares ``/tmp/scripts/cli_salt_*.py``
    between every run on the machine and never rewrites them, so a run could
    start its master and minion from another run's Salt (another venv, another
    version) or share a daemon's directory with a concurrent run.  A short
    path under /tmp: the daemons' unix sockets live under it.
    """
    root_dir = tempfile.mkdtemp(prefix="es-e2e-")
    yield {"root_dir": root_dir}
    shutil.rmtree(root_dir, ignore_errors=True)


#: What CI services and people set CI to, in any case.
_TRUTHY = ("true", "1", "yes", "on")


def _in_ci():
    return os.environ.get("CI", "").strip().lower() in _TRUTHY


def _mysqldb_modules():
    return {name for name in sys.modules if name == "MySQLdb" or name.startswith("MySQLdb.")}


@pytest.fixture(autouse=True)
def _no_mysqldb_alias_outlives_its_test():
    """
    ``pymysql.install_as_MySQLdb()`` (Salt's mysql returner runs it when it is
    loaded) makes every later ``import MySQLdb`` of the test run PyMySQL:
    undone after the test that did it.
    """
    before = _mysqldb_modules()
    yield
    for name in _mysqldb_modules() - before:
        del sys.modules[name]


def _given_or_throwaway(lib, what):
    """The server named by ``lib``'s URL variable, else a throwaway one ``lib`` starts."""
    if os.environ.get(lib.URL_ENV):
        yield lib.parse_url(os.environ[lib.URL_ENV])
        return
    yield from _throwaway(lib, what)


def _throwaway(lib, what):
    if not lib.server_binary():
        pytest.skip(f"no {what}: {lib.URL_ENV} is not set and no server binary is installed")
    server = lib.ThrowawayServer()
    try:
        yield server
    finally:
        server.stop()


def _fresh_database(server):
    name = server.create_database()
    try:
        yield name
    finally:
        server.drop_database(name)


@pytest.fixture(scope="session")
def mysql_server():
    """The server from EVENTSTORE_TEST_MYSQL_URL, else a throwaway MariaDB for this session."""
    yield from _given_or_throwaway(mysqlserver, "MySQL")


@pytest.fixture(scope="module")
def own_mysql_server():
    """
    A throwaway MariaDB of this module's own, even when a server is given:
    for tests that stop and start it.
    """
    yield from _throwaway(mysqlserver, "MySQL")


@pytest.fixture
def mysql_database(mysql_server):
    """Name of a fresh, empty utf8mb4 database, dropped after the test."""
    yield from _fresh_database(mysql_server)


@pytest.fixture(scope="session")
def postgres_server():
    """The server from EVENTSTORE_TEST_POSTGRES_URL, else a throwaway PostgreSQL for this session."""
    yield from _given_or_throwaway(pgserver, "PostgreSQL")


@pytest.fixture(scope="module")
def own_postgres_server():
    """A throwaway PostgreSQL of this module's own: for tests that stop and start it."""
    yield from _throwaway(pgserver, "PostgreSQL")


@pytest.fixture
def postgres_database(postgres_server):
    """Name of a fresh, empty UTF-8 database, dropped after the test."""
    yield from _fresh_database(postgres_server)


@pytest.fixture
def postgres_opts(postgres_server, postgres_database):
    """Salt master config pointing the pgjsonb returner (and our runner) at `postgres_database`."""
    return pgjsonb_keys(postgres_server, postgres_database)


@pytest.fixture
def mysql_opts(mysql_server, mysql_database):
    """Salt master config pointing the mysql returner (and our runner) at `mysql_database`."""
    return mysql_keys(mysql_server, mysql_database)


def _skip_reason(report):
    # A skip's longrepr is (path, lineno, "Skipped: <reason>").
    if isinstance(report.longrepr, tuple):
        return report.longrepr[2].removeprefix("Skipped: ")
    return str(report.longrepr)


def _fail_skips_in_ci(report):
    # xfail results also look "skipped"; they carry `wasxfail` and are left alone.
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.longrepr = f"skipped in CI: {_skip_reason(report)}"
        report.outcome = "failed"
    return report


# In CI a test that skips (no MySQL, no Salt, ...) would hide that nothing was tested: fail it.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # Covers skips from markers and fixtures (setup phase) and from the test body (call phase).
    return _fail_skips_in_ci((yield))


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    # Covers module-level skips such as `pytest.importorskip("salt")`.
    return _fail_skips_in_ci((yield))


def pytest_configure(config):
    # Importing salt (the salt-factories plugin does) installs a handler that
    # holds WARNING records until exit and then writes them to a stderr pytest
    # has already closed: pages of "Logging error" after every run. pytest's
    # own log capture sees every record anyway.
    import salt._logging  # pylint: disable=import-outside-toplevel

    salt._logging.shutdown_temp_handler()
