"""
Events into salt_events through real daemons: a real minion's ``event.send``
reaches a real master, whose eventstore engine (engine mode) or reactor
(reactor mode, the README's reactor line) stores the events whose tags match
``eventstore: events`` with their sender, and ``salt-run eventstore.events``
reads them back; an event matching no glob is not stored.
"""

import json
import time

import pytest
from saltlib import REACTOR, engine_master_config, mysql_master_config
from runnerlib import REACTOR_SLS

#: What the masters store: the README's example glob, and a tag of the tests' own.
EVENTS = ["salt/beacon/*", "eventstore-e2e/*"]


@pytest.fixture(scope="module")
def e2e_database(module_database):
    return module_database


def with_events(config):
    return {**config, "eventstore": {"events": EVENTS, "catch_up": False}}


@pytest.fixture(scope="module", params=["engine", "reactor"])
def events_master(request, salt_factories, mysql_server, e2e_database):
    """
    A master storing events in engine mode or in reactor mode (the README's
    reactor line for the events beside the one for returns), and its minion.
    """
    mode = request.param
    if mode == "engine":
        config = engine_master_config(mysql_server, e2e_database, max_delay=0.05)
    else:
        config = mysql_master_config(mysql_server, e2e_database)
        config["reactor"] = [*REACTOR, {"eventstore-e2e/*": [str(REACTOR_SLS)]}]
    factory = salt_factories.salt_master_daemon(f"es-events-{mode}", overrides=with_events(config))
    with factory.started():
        assert factory.salt_run_cli().run("eventstore.init").returncode == 0
        minion = factory.salt_minion_daemon(f"es-events-{mode}-minion")
        with minion.started():
            yield factory, minion


def stored_events(master, tag, expected=1, timeout=60):
    """
    What ``salt-run eventstore.events tag=...`` lists, once it lists ``expected`` events.
    """
    deadline = time.time() + timeout
    while True:
        ret = master.salt_run_cli().run("eventstore.events", f"tag={tag}", "--out=json")
        assert ret.returncode == 0, ret
        found = (ret.data if isinstance(ret.data, dict) else json.loads(ret.stdout))["events"]
        if len(found) >= expected or time.time() > deadline:
            return found
        time.sleep(0.5)


def test_a_minion_s_event_matching_the_globs_is_stored_with_its_sender(events_master):
    master, minion = events_master
    tag = f"eventstore-e2e/{minion.id}/hello"
    payload = json.dumps({"disk": "91%", "emoji": "😀"}, ensure_ascii=False)
    ret = minion.salt_call_cli().run("event.send", tag, f"data={payload}")
    assert ret.returncode == 0, ret
    [event] = stored_events(master, tag)
    assert event["sender"] == minion.id
    assert event["master_id"] == master.id
    assert event["data"]["data"]["disk"] == "91%"
    assert event["data"]["data"]["emoji"] == "😀"


def test_a_minion_s_event_matching_no_glob_is_not_stored(events_master):
    master, minion = events_master
    # Sent first: when the matching one after it is stored, this one was seen.
    ret = minion.salt_call_cli().run("event.send", f"not-stored/{minion.id}")
    assert ret.returncode == 0, ret
    marker = f"eventstore-e2e/{minion.id}/after"
    assert minion.salt_call_cli().run("event.send", marker).returncode == 0
    assert stored_events(master, marker)
    assert stored_events(master, "not-stored/*", expected=1, timeout=0) == []


def test_a_minion_s_events_are_read_back_by_sender(events_master):
    master, minion = events_master
    tag = f"eventstore-e2e/{minion.id}/by-sender"
    assert minion.salt_call_cli().run("event.send", tag).returncode == 0
    stored_events(master, tag)
    ret = master.salt_run_cli().run(
        "eventstore.events", f"minion={minion.id}", "tag=eventstore-e2e/*", "--out=json"
    )
    assert ret.returncode == 0, ret
    assert {event["sender"] for event in ret.data["events"]} == {minion.id}
