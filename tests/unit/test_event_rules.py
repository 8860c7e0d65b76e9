"""
Events other than job results (``eventstore: events``): which are stored in
salt_events, the row each becomes, and the same choice in the engine's
prefilter and the reactor SLS.  tests/integration/test_salt_events.py stores them
on every backend; tests/e2e/test_minion_events.py through real daemons.
"""

import datetime
import importlib.util
import json

import pytest
import salt.payload
import salt.utils.event
import salt.utils.json
from runnerlib import REPO
from saltext.eventstore import config, rows
from test_salt_integration import master_opts, render_reaction  # noqa: F401

NOW = datetime.datetime(2026, 11, 26, 12, 0, 5, 123456, tzinfo=datetime.timezone.utc)
BEACON = "salt/beacon/web1/diskusage/"
BEACON_DATA = {"id": "web1", "data": {"/": 91.5}, "_stamp": "2026-11-26T12:00:05.000001"}
#: Job results under each tag they come with: never events.
JOB_TAGS = [
    "salt/job/20261126120000000000/ret/web1",
    "salt/job/20261126120000000000/new",
    "salt/run/20261126120000000000/ret",
    "salt/wheel/20261126120000000000/ret",
]
#: The master's runner and wheel job events that are not results: no row of any table.
OTHER_MASTER_JOB_TAGS = [
    "salt/run/20261126120000000000/new",
    "salt/run/20261126120000000000/progress",
    "salt/wheel/20261126120000000000/new",
]


def test_no_event_is_stored_by_default():
    assert config.resolve_config({}).event_globs == ()
    assert not rows.is_stored_event(BEACON, ())


def test_an_event_matching_a_glob_is_stored():
    assert rows.is_stored_event(BEACON, ("salt/beacon/*",))


def test_an_event_matching_no_glob_is_not_stored():
    assert not rows.is_stored_event("salt/auth", ("salt/beacon/*",))


def test_globs_match_tags_case_sensitively():
    assert not rows.is_stored_event("Salt/Beacon/web1/x", ("salt/beacon/*",))


@pytest.mark.parametrize("tag", JOB_TAGS)
def test_job_results_are_never_stored_as_events_whatever_the_globs(tag):
    assert not rows.is_stored_event(tag, ("*",))


def test_a_single_glob_is_read_as_a_list_of_one():
    assert config.resolve_config({"eventstore": {"events": "salt/beacon/*"}}).event_globs == (
        "salt/beacon/*",
    )


def test_the_event_row_is_what_event_return_writes():
    row = rows.event_row(BEACON, BEACON_DATA, "master-1", NOW)
    assert row.tag == BEACON
    assert json.loads(row.data) == json.loads(salt.utils.json.dumps(BEACON_DATA))
    assert row.master_id == "master-1"


def test_the_event_row_keeps_the_time_it_came_in_to_the_second_in_utc():
    assert rows.event_row(BEACON, BEACON_DATA, "m", NOW).alter_time == "2026-11-26 12:00:05"


def test_odd_characters_are_kept_exactly():
    data = {"id": "web1", "text": 'é 😀 "quoted" back\\slash\nnew line \x00 \udcff'}
    row = rows.event_row("my/é😀 tag", data, "m", NOW)
    assert row.tag == "my/é😀 tag"
    assert json.loads(row.data) == data


def test_a_tag_that_is_not_utf8_is_refused():
    with pytest.raises(rows.Refused, match="UTF-8"):
        rows.event_row("my/\udcff", {}, "m", NOW)


def test_the_sender_is_the_id_salt_puts_in_the_data():
    assert rows.event_sender(BEACON_DATA) == "web1"
    assert rows.event_sender({"data": "no id"}) == ""
    assert rows.event_sender("not a mapping") == ""


def test_a_tag_longer_than_the_column_is_oversize():
    row = rows.event_row("my/" + "x" * 300, BEACON_DATA, "m", NOW)
    assert "the tag is 303 characters" in rows.oversize(row)


def test_data_bigger_than_mediumtext_is_oversize():
    row = rows.event_row(BEACON, {"id": "web1", "big": "x" * rows.TEXT_BYTES}, "m", NOW)
    assert rows.oversize(row).startswith("data is")


def test_an_event_s_dead_letter_keeps_it_whole_with_its_sender():
    row = rows.event_row("my/" + "x" * 300, BEACON_DATA, "m", NOW)
    letter = rows.dead_letter(row, "too long")
    assert letter.jid.startswith(rows.EVENT_LETTER_PREFIX)
    assert letter.id == "web1"
    assert json.loads(letter.data) == {
        "tag": row.tag,
        "master_id": "m",
        "alter_time": "2026-11-26 12:00:05",
        "data": BEACON_DATA,
    }


def test_the_same_event_dead_lettered_twice_is_one_letter():
    row = rows.event_row("my/" + "x" * 300, BEACON_DATA, "m", NOW)
    assert rows.dead_letter(row, "a").jid == rows.dead_letter(row, "b").jid


def test_an_event_s_dead_letter_names_its_tag_without_nul():
    row = rows.event_row("my/\x00tag" + "x" * 300, BEACON_DATA, "m", NOW)
    assert "\x00" not in rows.dead_letter(row, "r").fun


# The engine's prefilter: the same choice, on the raw bytes of the bus.


@pytest.fixture
def engine():
    spec = importlib.util.spec_from_file_location(
        "eventstore_engine", REPO / "_engines" / "eventstore.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raw(tag, data=None):
    data = salt.payload.dumps(data or {"id": "web1"}, use_bin_type=True)
    return tag.encode() + salt.utils.event.TAGEND.encode() + data


def pattern(engine, globs):
    return engine._event_pattern({"eventstore": {"events": globs}})


def test_the_engine_queues_an_event_matching_a_glob(engine):
    assert engine._stored_tag(raw(BEACON), pattern(engine, ["salt/beacon/*"])) == BEACON.encode()


def test_the_engine_leaves_an_event_matching_no_glob(engine):
    assert engine._stored_tag(raw("salt/auth"), pattern(engine, ["salt/beacon/*"])) is None


def test_the_engine_queues_no_event_by_default(engine):
    assert engine._event_pattern({}) is None
    assert engine._stored_tag(raw(BEACON), None) is None


@pytest.mark.parametrize("tag", OTHER_MASTER_JOB_TAGS)
def test_the_engine_queues_no_other_runner_or_wheel_event_as_an_event(engine, tag):
    assert engine._stored_tag(raw(tag), pattern(engine, ["*"])) is None


def test_the_engine_matches_non_ascii_tags_as_the_runner_does(engine):
    assert engine._stored_tag(raw("my/é"), pattern(engine, ["my/?"])) == "my/é".encode()


# The reactor SLS: no runner job for an event the runner would not store.


def test_the_reactor_sls_hands_a_matching_event_to_the_runner(master_opts):  # noqa: F811
    master_opts["eventstore"]["events"] = ["salt/beacon/*"]
    high = render_reaction(master_opts, BEACON, BEACON_DATA)
    assert high["eventstore_store"]["runner.eventstore.store"][0]["args"][0] == {"tag": BEACON}


def test_the_reactor_sls_starts_no_job_for_an_event_matching_no_glob(master_opts):  # noqa: F811
    master_opts["eventstore"]["events"] = ["salt/beacon/*"]
    assert render_reaction(master_opts, "salt/auth", {"id": "web1"}) == {}


def test_the_reactor_sls_starts_no_job_for_events_by_default(master_opts):  # noqa: F811
    assert render_reaction(master_opts, BEACON, BEACON_DATA) == {}


@pytest.mark.parametrize("tag", OTHER_MASTER_JOB_TAGS)
def test_the_reactor_sls_starts_no_job_for_another_runner_or_wheel_event(master_opts, tag):  # noqa: F811
    master_opts["eventstore"]["events"] = ["*"]
    assert render_reaction(master_opts, tag, {"fun": "runner.test.arg", "return": 1}) == {}
