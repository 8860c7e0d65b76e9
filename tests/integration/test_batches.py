"""
Events stored in batches (what the engine calls), on every backend: the same
rows, counts and guarantees as one event at a time.
"""

import pytest
from runnerlib import JID, load_runner, new_event, ret_event


@pytest.fixture(params=["sqlite", "mysql", "postgres"])
def es(request, tmp_path):
    if request.param == "sqlite":
        opts = {"cachedir": str(tmp_path)}
    else:
        opts = dict(request.getfixturevalue(f"{request.param}_opts"), cachedir=str(tmp_path))
    # Events are taken as they come here; test_job_cache.py checks batches against a job cache.
    opts["eventstore"] = {"verify_returns": False}
    runner = load_runner(opts)
    runner.init()
    return runner


def events(*tag_data):
    return [{"tag": tag, "data": data} for tag, data in tag_data]


def count(es, table="salt_returns"):
    (n,) = es._store().select(f"SELECT COUNT(*) FROM `{table}`", ())[0]
    return n


def stored(counts):
    return {verdict: n for verdict, n in counts.items() if n}


def test_a_batch_of_returns_and_a_load_is_stored(es):
    batch = events(new_event(), *(ret_event(minion=f"web{n}", ret=n) for n in range(50)))
    assert stored(es.store_events(batch)) == {"stored": 51}
    assert es.query(jid=JID) == {f"web{n}": n for n in range(50)}
    assert count(es, "jids") == 1


def test_a_return_twice_in_one_batch_is_one_row(es):
    batch = events(ret_event(ret="first"), ret_event(ret="second"))
    assert stored(es.store_events(batch)) == {"stored": 1, "duplicate": 1}
    assert es.query(jid=JID) == {"web1": "first"}


def test_a_batch_stored_again_is_all_duplicates(es):
    batch = events(*(ret_event(minion=f"web{n}") for n in range(5)))
    es.store_events(batch)
    assert stored(es.store_events(batch)) == {"duplicate": 5}
    assert count(es) == 5


def test_other_tags_and_ignored_functions_in_a_batch_are_counted_as_ignored(es):
    batch = events(
        ("salt/auth", {"id": "web1"}),
        ret_event(minion="finder", fun="saltutil.find_job", ret={}),
        ret_event(minion="web1"),
    )
    assert stored(es.store_events(batch)) == {"ignored": 2, "stored": 1}


def test_a_refused_event_does_not_keep_the_rest_of_its_batch_out(es):
    tag, data = ret_event(minion="impostor")
    data["id"] = "someone-else"
    batch = events((tag, data), ret_event(minion="web1"), ret_event(minion="web2"))
    assert stored(es.store_events(batch)) == {"refused": 1, "stored": 2}
    assert sorted(es.query(jid=JID)) == ["web1", "web2"]


def test_a_row_the_database_refuses_is_a_dead_letter_and_the_rest_of_its_table_is_stored(es):
    good = [
        es.lib.rows.return_row(JID, f"web{n}", ret_event(minion=f"web{n}")[1]) for n in range(3)
    ]
    # A NULL in a NOT NULL column: refused by either database, for this row only.
    bad = good[1]._replace(id="bad", ret=None)
    counts = es._runtime().writer.write_many([good[0], bad, good[2]])
    assert stored(counts) == {"stored": 2, "dead-lettered": 1}
    assert sorted(es.query(jid=JID)) == ["bad", "web0", "web2"]
    assert es.query(jid=JID)["bad"].startswith("Not stored: the database refused it")


def test_the_reactors_store_and_a_batch_make_one_row_between_them(es):
    tag, data = ret_event()
    assert es.store(tag, data) == "stored"
    assert stored(es.store_events(events((tag, data)))) == {"duplicate": 1}
    assert count(es) == 1


def test_an_empty_batch_stores_nothing(es):
    assert stored(es.store_events([])) == {}
