"""
eventstore installed from its wheel into the master's Python, as an admin does
with ``salt-pip install saltext-eventstore``: Salt's loader finds the runner and
the engine through the package's entry point, with nothing synced, no
``runner_dirs``/``engines_dirs`` and no file copied into ``file_roots``; the
reactor SLS is put in place by ``salt-run eventstore.install_reactor``.  Both
modes store into SQLite, the zero-config backend.  Runs in a fresh virtualenv
per Salt line (`make test-package`).
"""

import importlib.metadata
import os
import pathlib
import sysconfig
import time

import pytest
import salt.client
from saltlib import Reactions, run_job

PACKAGE = os.path.join(sysconfig.get_paths()["purelib"], "saltext", "eventstore")


def assert_no_eventstore_but_the_package(config):
    # salt-factories adds an engines dir of its own: none may hold an eventstore.
    for key in ("runner_dirs", "engines_dirs"):
        for folder in config.get(key) or ():
            assert not os.path.exists(os.path.join(folder, "eventstore.py")), (key, folder)


@pytest.fixture(scope="module")
def reactor_master(salt_factories):
    # The SLS path is the master's own: install_reactor writes it after the start.
    sls = os.path.join(salt_factories.root_dir, "es-pkg-reactor-sls", "eventstore.sls")
    reactor = [{"salt/job/*/ret/*": [sls]}]
    factory = salt_factories.salt_master_daemon("es-pkg-reactor", overrides={"reactor": reactor})
    assert_no_eventstore_but_the_package(factory.config)
    with factory.started():
        installed = factory.salt_run_cli().run("eventstore.install_reactor", f"path={sls}")
        assert installed.returncode == 0, installed
        assert factory.salt_run_cli().run("eventstore.init").returncode == 0
        yield factory


@pytest.fixture(scope="module")
def engine_master(salt_factories):
    overrides = {"engines": [{"eventstore": {}}]}  # as the README shows it
    factory = salt_factories.salt_master_daemon("es-pkg-engine", overrides=overrides)
    assert_no_eventstore_but_the_package(factory.config)
    with factory.started():
        assert factory.salt_run_cli().run("eventstore.init").returncode == 0
        yield factory


def query(master, jid, timeout=60):
    """
    ``salt-run eventstore.query jid=<jid>`` once it finds the job's return:
    the engine stores in its own time.
    """
    deadline = time.time() + timeout
    while True:
        ret = master.salt_run_cli().run("eventstore.query", f"jid={jid}")
        if ret.data or time.time() > deadline:
            return ret.data
        time.sleep(0.5)


def test_status_shows_the_installed_version_loaded_from_the_package(reactor_master):
    report = reactor_master.salt_run_cli().run("eventstore.status").data
    assert report["version"] == importlib.metadata.version("saltext-eventstore")
    assert report["loaded_from"] == os.path.join(PACKAGE, "runners", "eventstore.py")


def test_salt_run_d_documents_the_installed_runner(reactor_master):
    docs = reactor_master.salt_run_cli().run("doc.runner").data
    for name in ("eventstore.query", "eventstore.status", "eventstore.install_reactor"):
        assert "CLI Example:" in docs[name], name


def test_install_reactor_writes_the_sls_that_ships_in_the_package(reactor_master):
    (sls,) = reactor_master.config["reactor"][0]["salt/job/*/ret/*"]
    shipped = pathlib.Path(PACKAGE, "reactor", "eventstore.sls")
    assert pathlib.Path(sls).read_text() == shipped.read_text()


def test_reactor_mode_stores_a_return_that_query_reads(reactor_master, event_listener):
    reactions = Reactions(event_listener, reactor_master)
    minion = reactor_master.salt_minion_daemon("es-pkg-reactor-minion")
    with minion.started(), salt.client.get_local_client(reactor_master.config_file) as client:
        jid, ret = run_job(client, minion, "test.echo", ["stored through the reactor"])
        assert reactions.result(f"salt/job/{jid}/ret/{minion.id}") == "stored"
    assert query(reactor_master, jid) == {minion.id: ret}


def test_engine_mode_stores_a_return_that_query_reads(engine_master):
    minion = engine_master.salt_minion_daemon("es-pkg-engine-minion")
    with minion.started(), salt.client.get_local_client(engine_master.config_file) as client:
        jid, ret = run_job(client, minion, "test.echo", ["stored by the engine"])
    assert query(engine_master, jid) == {minion.id: ret}
