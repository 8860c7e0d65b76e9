"""
The same runner behaviour on every backend: SQLite files, a real MariaDB and a real PostgreSQL.
"""

import threading

import pytest
from runnerlib import JID, count, new_event, ret_event


def test_store_and_query_round_trip(es):
    es.store(*ret_event(fun="cmd.run", ret={"stdout": "ok", "lines": [1, 2]}))
    assert es.query(jid=JID) == {"web1": {"stdout": "ok", "lines": [1, 2]}}


def test_a_return_stored_twice_is_one_row(es):
    tag, data = ret_event()
    assert [es.store(tag, data), es.store(tag, data)] == ["stored", "duplicate"]
    assert count(es) == 1


def test_a_job_load_stored_twice_is_one_row(es):
    tag, data = new_event()
    assert [es.store(tag, data), es.store(tag, data)] == ["stored", "duplicate"]
    assert count(es, "jids") == 1


def test_four_byte_and_non_ascii_text_round_trips(es):
    text = "grüße 東京 \U0001f680 \U0001f9c2"
    es.store(*ret_event(ret=text))
    assert es.query(jid=JID) == {"web1": text}


def test_minion_ids_differing_in_case_are_different_minions(es):
    es.store(*ret_event(minion="Web1", ret="upper"))
    assert es.store(*ret_event(minion="web1", ret="lower")) == "stored"
    assert es.query(jid=JID) == {"Web1": "upper", "web1": "lower"}


def test_ten_threads_storing_at_once_lose_nothing(es):
    def worker(n):
        for i in range(25):
            assert es.store(*ret_event(minion=f"m{n}-{i}")) == "stored"

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert count(es) == 250


def test_latest_query_filters_on_both_backends(es):
    es.store(*ret_event(jid="20261126100000000000", minion="web1", fun="cmd.run", success=False))
    es.store(*ret_event(jid="20261126110000000000", minion="web2", fun="cmd.run"))
    es.store(*ret_event(jid="20261126120000000000", minion="db1", fun="test.ping"))
    listed = es.query(minion="web*", fun="cmd.*", success=False)
    assert [(r["jid"], r["minion"], r["success"]) for r in listed] == [
        ("20261126100000000000", "web1", False)
    ]


def test_quotes_and_backslashes_round_trip(es):
    text = "it's a \"quoted\" C:\\path\\ and \\' and \\\\'"
    es.store(*ret_event(minion="o'brien", ret=text))
    assert es.query(jid=JID) == {"o'brien": text}


def test_function_name_longer_than_its_column_is_stored_and_found(es):
    fun = "a_custom_execution_module_with_a_long_name.and_a_long_function"
    assert es.store(*ret_event(fun=fun, ret="found")) == "stored"
    assert [r["fun"] for r in es.query(fun=fun)] == [fun]


def test_return_bigger_than_its_column_is_kept_and_shown_not_cut(es):
    assert es.store(*ret_event(ret="x" * (16 * 1024 * 1024))) == "dead-lettered"
    (shown,) = es.query(jid=JID).values()
    assert shown.startswith("Not stored: ") and "mediumtext" in shown
    assert es.status()["dead_letters"]["in the table"] + es.status()["dead_letters"]["on disk"] == 1


def test_quotes_emoji_and_sql_in_text_round_trip_literally(es):
    text = "emoji \U0001f680, quote ' and \"; DROP TABLE jids; --"
    es.store(*ret_event(minion="web1'); DROP TABLE salt_returns; --", ret=text))
    assert es.query(jid=JID) == {"web1'); DROP TABLE salt_returns; --": text}


# PostgreSQL's jsonb holds neither: test_postgres.py says what becomes of them there.
@pytest.mark.parametrize("es", ["sqlite", "mysql"], indirect=True)
def test_hostile_text_round_trips_literally(es):
    text = "NUL \x00, lone \udc80, emoji \U0001f680, quote ' and \"; DROP TABLE jids; --"
    es.store(*ret_event(minion="web1'); DROP TABLE salt_returns; --", ret=text))
    assert es.query(jid=JID) == {"web1'); DROP TABLE salt_returns; --": text}
