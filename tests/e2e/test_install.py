"""
The install path of the README on a zero-config master: copy the runner and the
package it imports under file_roots, `salt-run saltutil.sync_runners`,
`eventstore.init`, and returns land in SQLite under the master's cachedir.
"""

import pathlib

import pytest
from saltlib import REACTOR, Reactions, run_job
from runnerlib import copy_synced_install


@pytest.fixture(scope="module")
def plain_master(salt_factories):
    factory = salt_factories.salt_master_daemon("es-install-master", overrides={"reactor": REACTOR})
    with factory.started():
        copy_synced_install(pathlib.Path(factory.config["file_roots"]["base"][0]) / "_runners")
        # Before any job event: the reactor keeps its first runner loader a minute.
        synced = factory.salt_run_cli().run("saltutil.sync_runners")
        assert "runners.eventstore" in synced.data, synced
        yield factory


@pytest.fixture(scope="module")
def plain_minion(plain_master):
    factory = plain_master.salt_minion_daemon("es-install-minion")
    with factory.started():
        yield factory


def test_init_reports_sqlite_in_the_master_cachedir(plain_master):
    ret = plain_master.salt_run_cli().run("eventstore.init")
    assert ret.returncode == 0
    assert f"sqlite://{plain_master.config['cachedir']}/eventstore.sqlite3" in ret.stdout, ret


def test_synced_runner_stores_returns_in_sqlite(plain_master, plain_minion, event_listener):
    reactions = Reactions(event_listener, plain_master)
    from salt.client import get_local_client

    with get_local_client(plain_master.config_file) as client:
        jid, _ = run_job(client, plain_minion, "test.ping")
    assert reactions.result(f"salt/job/{jid}/ret/{plain_minion.id}") == "stored"
    ret = plain_master.salt_run_cli().run("eventstore.query", f"jid={jid}")
    assert ret.data == {plain_minion.id: True}


def test_salt_run_d_is_the_manual(plain_master):
    docs = plain_master.salt_run_cli().run("doc.runner").data
    for name in ("eventstore.store", "eventstore.query", "eventstore.init"):
        assert "CLI Example:" in docs[name], name
