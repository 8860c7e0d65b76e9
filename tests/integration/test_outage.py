"""
A real MariaDB, and a real PostgreSQL, stopped and started under the runner.
"""

import logging
import time

import pytest
from runnerlib import (
    JID,
    beacon_event,
    load_runner,
    mysql_keys,
    pgjsonb_keys,
    ret_event,
    storing_events,
)

KEYS = {"mysql": mysql_keys, "postgres": pgjsonb_keys}


@pytest.fixture
def server(request, backend):
    return request.getfixturevalue(f"own_{backend}_server")


#: The password of the MariaDB user the runner logs in as.
PASSWORD = "outage-test-secret-pw"


def login_with_a_password(server, backend, database):
    """
    A login to ``database`` with a password, to look for in the log: the
    throwaway PostgreSQL's superuser has one; MariaDB's root has none, so a
    user of its own.
    """
    if backend == "postgres":
        return server.user, server.password
    user = f"u{database[-12:]}"
    with server.connect().cursor() as cur:
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, PASSWORD))
        cur.execute(f"GRANT ALL ON `{database}`.* TO %s@'%%'", (user,))
    return user, PASSWORD


@pytest.fixture
def es(server, backend, tmp_path):
    name = server.create_database()
    user, password = login_with_a_password(server, backend, name)
    runner = load_runner(
        {
            **KEYS[backend](server, name, user, password),
            "cachedir": str(tmp_path),
            "eventstore": {"verify_returns": False},
        }
    )
    runner.password = password  # what the log must not show
    runner.init()
    yield runner
    if not server.running:  # the test left it stopped
        server.resume()
    if backend == "mysql":
        with server.connect().cursor() as cur:
            cur.execute("DROP USER %s@'%%'", (user,))
    server.drop_database(name)


def connect_tries(es):
    """The list each try to connect to the server appends to, from now on."""
    tries = []
    store = type(es._store())
    connect = store.connect
    store.connect = lambda self: tries.append(1) or connect(self)
    return tries


def test_returns_made_while_the_server_is_down_are_stored_once_it_is_back(es, server):
    assert es.store(*ret_event(minion="before")) == "stored"
    server.pause()
    assert [es.store(*ret_event(minion=f"down-{n}")) for n in range(5)] == ["spooled"] * 5
    server.resume()
    assert es.replay()["written back"] == 5
    assert sorted(es.query(jid=JID)) == ["before"] + [f"down-{n}" for n in range(5)]


def test_a_stopped_server_is_not_tried_again_on_every_call(es, server):
    es._runtime().writer.first_pause = 3600
    es.store(*ret_event(minion="before"))
    server.pause()
    es.store(*ret_event(minion="first-failure"))
    tries = connect_tries(es)
    for n in range(10):
        es.store(*ret_event(minion=f"m{n}"))
    assert tries == []


def test_the_outage_and_the_recovery_are_logged_once_each(es, server, caplog):
    es._runtime().writer.first_pause = 0  # every store tries the server again
    es.store(*ret_event(minion="before"))
    server.pause()
    tries = connect_tries(es)
    with caplog.at_level(logging.WARNING):
        for n in range(5):
            assert es.store(*ret_event(minion=f"m{n}")) == "spooled"
        assert len(tries) == 5
        server.resume()
        es.replay()
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "is unavailable" in m]) == 1
    assert len([m for m in messages if "spool is written back" in m]) == 1


def test_the_outage_warning_names_the_server_not_the_password(es, server, caplog):
    es.store(*ret_event(minion="before"))
    server.pause()
    with caplog.at_level(logging.WARNING):
        es.store(*ret_event(minion="during"))
    (warning,) = [r.getMessage() for r in caplog.records if "is unavailable" in r.getMessage()]
    assert f"{server.host}:{server.port}" in warning
    assert es.password not in caplog.text


def test_a_batch_made_while_the_server_is_down_is_spooled_and_written_back(es, server):
    assert es.store(*ret_event(minion="before")) == "stored"
    server.pause()
    batch = [
        {"tag": tag, "data": data}
        for tag, data in (ret_event(minion=f"down-{n}") for n in range(20))
    ]
    assert es.store_events(batch)["spooled"] == 20
    server.resume()
    assert es.replay()["written back"] == 20
    assert sorted(es.query(jid=JID)) == ["before"] + sorted(f"down-{n}" for n in range(20))


def test_events_made_while_the_server_is_down_are_stored_once_it_is_back_with_their_time(
    es, server
):
    storing_events(es, "salt/beacon/*")
    server.pause()
    assert es.store(*beacon_event("down")) == "spooled"
    spooled_at = es.lib.times.utc_now().strftime("%Y-%m-%d %H:%M:%S")
    time.sleep(1.1)  # written back a second later: the time stays the event's
    server.resume()
    assert es.replay()["written back"] == 1
    [event] = es.events()["events"]
    assert event["sender"] == "down" and event["time"][:19] <= spooled_at
