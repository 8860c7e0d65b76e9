"""
salt_events on every backend (SQLite, MariaDB, PostgreSQL): the events whose
tags match ``eventstore: events`` stored as event_return stores them, read
back by ``eventstore.events``, refused ones kept as dead letters, counted by
``status``, pruned and archived by ``prune``.  The outage is in
test_outage.py, the returner's own salt_events in test_migrate.py.
"""

import json

import pytest
from runnerlib import beacon_event, count, ret_event, storing_events


@pytest.fixture
def ev(es):
    return storing_events(es, "salt/beacon/*", "my/*")


def stored_rows(es):
    return es._store().select(
        "SELECT `tag`, `data`, `master_id` FROM `salt_events` ORDER BY `id`", ()
    )


def test_an_event_matching_a_glob_is_one_row_in_event_return_s_layout(ev):
    tag, data = beacon_event()
    assert ev.store(tag, data) == "stored"
    [(row_tag, row_data, master_id)] = stored_rows(ev)
    assert (row_tag, json.loads(row_data), master_id) == (tag, data, "es-master")


def test_an_event_matching_no_glob_is_not_stored(ev):
    assert ev.store("salt/auth", {"id": "web1", "act": "accept", "pub": "KEY"}) == "ignored"
    assert count(ev, "salt_events") == 0


def test_no_event_is_stored_without_globs(es):
    assert es.store(*beacon_event()) == "ignored"
    assert count(es, "salt_events") == 0


def test_a_job_return_is_stored_once_as_a_return_not_as_an_event(es):
    storing_events(es, "*")
    assert es.store(*ret_event()) == "stored"
    assert (count(es, "salt_returns"), count(es, "salt_events")) == (1, 0)


def test_the_engine_s_batch_stores_events_and_returns_each_in_its_table(ev):
    counts = ev.store_events([dict(zip(("tag", "data"), e)) for e in (beacon_event(), ret_event())])
    assert counts["stored"] == 2
    assert (count(ev, "salt_returns"), count(ev, "salt_events")) == (1, 1)


def test_odd_characters_are_stored_exactly(ev):
    tag = "my/é😀 'quoted' \"twice\" back\\slash"
    data = {"id": "web1", "text": 'é 😀 "q" \\ \n\t \' %s %% ?', "nested": [1, 2.5, None, True]}
    assert ev.store(tag, data) == "stored"
    [event] = ev.events()["events"]
    assert (event["tag"], event["data"]) == (tag, data)


def test_a_tag_longer_than_the_column_is_kept_whole_as_a_dead_letter(ev):
    tag = "my/" + "x" * 300
    assert ev.store(tag, {"id": "web1"}) == "dead-lettered"
    [(reason, data)] = ev._store().select(
        "SELECT `reason`, `data` FROM `eventstore_dead_letters`", ()
    )
    assert "the tag is 303 characters" in reason
    assert json.loads(data)["tag"] == tag
    assert count(ev, "salt_events") == 0


def test_the_same_event_dead_lettered_twice_is_one_letter(ev):
    tag = "my/" + "x" * 300
    ev.store_events([{"tag": tag, "data": {"id": "web1"}}])
    assert count(ev, "eventstore_dead_letters") == 1


def test_a_nul_character_is_stored_or_dead_lettered_with_a_reason_that_quotes_no_data(
    ev, caplog, request
):
    data = {"id": "web1", "secret": "hunter2\x00"}
    verdict = ev.store("my/nul", data)
    if ev._store().dialect == "postgres":  # jsonb cannot hold \u0000
        assert verdict == "dead-lettered"
        [(reason,)] = ev._store().select("SELECT `reason` FROM `eventstore_dead_letters`", ())
        assert "hunter2" not in reason and "hunter2" not in caplog.text
    else:
        assert verdict == "stored"
        assert ev.events()["events"][0]["data"] == data


def test_events_lists_the_newest_first_with_sender_and_time(ev):
    for minion in ("web1", "web2", "db1"):
        ev.store(*beacon_event(minion))
    page = ev.events()
    assert [e["sender"] for e in page["events"]] == ["db1", "web2", "web1"]
    assert all(e["time"][:2] == "20" and e["master_id"] == "es-master" for e in page["events"])
    assert page["next"] is None


def test_events_filters_by_tag_glob(ev):
    ev.store(*beacon_event("web1", "load"))
    ev.store(*beacon_event("web1", "diskusage"))
    ev.store("my/other", {"id": "web1"})
    found = ev.events(tag="salt/beacon/*/load/*")["events"]
    assert [e["tag"] for e in found] == ["salt/beacon/web1/load/"]


def test_events_tag_glob_is_case_sensitive(ev):
    ev.store("my/Tag", {"id": "web1"})
    assert ev.events(tag="my/tag")["events"] == []


def test_events_minion_matches_the_sender(ev):
    for minion in ("web1", "web2", "db1"):
        ev.store(*beacon_event(minion))
    assert [e["sender"] for e in ev.events(minion="web*")["events"]] == ["web2", "web1"]


def test_events_pages_with_a_cursor(ev):
    for n in range(5):
        ev.store(*beacon_event(f"web{n}"))
    first = ev.events(limit=2)
    second = ev.events(limit=2, before=first["next"])
    third = ev.events(limit=2, before=second["next"])
    senders = [e["sender"] for page in (first, second, third) for e in page["events"]]
    assert senders == ["web4", "web3", "web2", "web1", "web0"]
    assert third["next"] is None


def test_events_since_leaves_out_older_events(ev):
    ev.store(*beacon_event("old"))
    ev._store().run(
        lambda cur: cur.execute("UPDATE salt_events SET alter_time = '2020-01-01 00:00:00'")
    )
    ev.store(*beacon_event("new"))
    assert [e["sender"] for e in ev.events(since="1h")["events"]] == ["new"]
    assert [e["sender"] for e in ev.events(until="2021-01-01")["events"]] == ["old"]


def test_events_refuses_a_bad_time(ev):
    result = ev.events(since="yesterday-ish")
    assert result["retcode"] == 1 and "not a time" in result["Error"]


def test_status_counts_the_events(ev):
    ev.store(*beacon_event())
    assert ev.status()["rows"]["salt_events"] == 1


def make_old(es, tag):
    es._store().run(
        lambda cur: cur.execute(
            es._store().sql("UPDATE `salt_events` SET `alter_time` = %s WHERE `tag` = %s"),
            ("2020-01-01 00:00:00", tag),
        )
    )


def test_prune_deletes_events_stored_before_the_cutoff(ev):
    ev.store("my/old", {"id": "web1"})
    ev.store("my/new", {"id": "web1"})
    make_old(ev, "my/old")
    assert ev.prune(days=30, dry_run=True)["salt_events"] == 1
    assert ev.prune(days=30, batch_size=1)["salt_events"] == 1
    assert [e["tag"] for e in ev.events()["events"]] == ["my/new"]


def test_prune_archives_events_to_salt_events_archive(ev):
    ev.store("my/old", {"id": "web1"})
    make_old(ev, "my/old")
    assert ev.prune(days=30, archive=True)["salt_events"] == 1
    [(tag,)] = ev._store().select("SELECT `tag` FROM `salt_events_archive`", ())
    assert tag == "my/old" and count(ev, "salt_events") == 0
