"""
The runner functions the reactor and admins call, on the zero-setup SQLite backend.
"""

import logging
import os
import sqlite3
import stat

from runnerlib import JID, new_event, ret_event


def rows(es, sql="SELECT fun, jid, id, success FROM salt_returns ORDER BY id"):
    with sqlite3.connect(es.lib.config.resolve_config(es.__opts__).sqlite_path) as conn:
        return conn.execute(sql).fetchall()


def test_store_writes_a_return_row(es):
    assert es.store(*ret_event()) == "stored"
    assert rows(es) == [("test.ping", JID, "web1", "1")]


def test_store_writes_the_job_load(es):
    assert es.store(*new_event(fun="cmd.run")) == "stored"
    assert rows(es, "SELECT jid FROM jids") == [(JID,)]


def test_other_tags_are_ignored_and_write_nothing(es):
    assert es.store("salt/auth", {"id": "web1"}) == "ignored"
    assert not os.path.exists(es.lib.config.resolve_config(es.__opts__).sqlite_path)


def test_find_job_return_is_ignored(es):
    es.init()
    assert es.store(*ret_event(fun="saltutil.find_job", ret={})) == "ignored"
    assert rows(es) == []


def test_refused_event_is_logged_once_with_tag_and_reason_but_not_its_data(es, caplog):
    tag, data = ret_event(ret="secret-token-value")
    data["id"] = "impostor"
    with caplog.at_level(logging.WARNING):
        assert es.store(tag, data) == "refused"
    assert len(caplog.records) == 1
    assert tag in caplog.text and "disagrees with the tag" in caplog.text
    assert "secret-token-value" not in caplog.text


def test_sqlite_file_is_readable_by_the_master_only(es):
    es.store(*ret_event())
    mode = stat.S_IMODE(os.stat(es.lib.config.resolve_config(es.__opts__).sqlite_path).st_mode)
    assert mode == 0o600


def test_store_reuses_its_connection_across_calls(es):
    opened = []
    connect = es.lib.store_sqlite.SQLiteStore.connect

    def counting_connect(self):
        opened.append(1)
        return connect(self)

    es.lib.store_sqlite.SQLiteStore.connect = counting_connect
    for minion in ("a", "b", "c"):
        es.store(*ret_event(minion=minion))
    assert len(opened) == 1


def test_init_creates_the_tables_and_can_run_again(es):
    assert "ready" in es.init()
    assert "ready" in es.init()
    assert rows(es, "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name") == [
        ("eventstore_dead_letters",),
        ("jids",),
        ("salt_events",),
        ("salt_returns",),
        ("sqlite_sequence",),  # salt_events' AUTOINCREMENT: ids never reused
    ]


def test_query_by_jid_of_a_state_run_asks_for_the_highstate_outputter(es):
    state_ret = {"test_|-x_|-x_|-succeed_without_changes": {"result": True, "changes": {}}}
    es.store(*ret_event(fun="state.apply", ret=state_ret, out="highstate"))
    assert es.query(jid=JID) == {"outputter": "highstate", "data": {"web1": state_ret}}


def test_query_by_unknown_jid_is_empty(es):
    es.init()
    assert es.query(jid="20000101000000000000") == {}


def test_query_lists_latest_returns_newest_job_first(es):
    es.store(*ret_event(jid="20261126100000000000", ret="old"))
    es.store(*ret_event(jid="20261126110000000000", ret="new"))
    listed = es.query()
    assert [r["return"] for r in listed] == ["new", "old"]
    assert set(listed[0]) == {"jid", "minion", "fun", "success", "time", "return"}


def test_query_filters_by_minion_glob(es):
    for minion in ("web1", "web2", "db1"):
        es.store(*ret_event(minion=minion))
    assert sorted(r["minion"] for r in es.query(minion="web*")) == ["web1", "web2"]


def test_query_filters_by_function(es):
    es.store(*ret_event(minion="a", fun="cmd.run"))
    es.store(*ret_event(minion="b", fun="test.ping"))
    assert [r["minion"] for r in es.query(fun="cmd.*")] == ["a"]


def test_query_filters_failed_returns(es):
    es.store(*ret_event(minion="ok", success=True))
    es.store(*ret_event(minion="bad", success=False))
    assert [r["minion"] for r in es.query(success=False)] == ["bad"]
    assert [r["minion"] for r in es.query(success="True")] == ["ok"]


def test_query_limit_caps_the_list(es):
    for n in range(5):
        es.store(*ret_event(minion=f"m{n}"))
    assert len(es.query(limit=2)) == 2


def test_query_glob_treats_sql_wildcards_literally(es):
    es.store(*ret_event(minion="web_1"))
    es.store(*ret_event(minion="webX1"))
    assert [r["minion"] for r in es.query(minion="web_1")] == ["web_1"]


def test_status_when_the_database_cannot_be_opened_is_unhealthy_and_fails(es, tmp_path):
    es.__opts__["eventstore"] = {"sqlite_path": str(tmp_path / "a-file" / "db")}
    (tmp_path / "a-file").write_text("a file where a folder should be")
    report = es.status()
    assert report["healthy"] is False
    assert report["problems"][0].startswith("cannot connect: ")
    assert report["retcode"] == es.__context__["retcode"] == 1


def test_migrate_on_sqlite_has_nothing_to_do(es):
    assert es.migrate().startswith("Nothing to migrate in sqlite://")
    assert "retcode" not in es.__context__


def test_init_that_cannot_create_the_tables_fails_with_the_reason(es, tmp_path):
    es.__opts__["eventstore"] = {"sqlite_path": str(tmp_path / "a-file" / "db")}
    (tmp_path / "a-file").write_text("a file where a folder should be")
    failed = es.init()
    assert failed["Error"].startswith("Could not create the tables in sqlite://")
    assert failed["retcode"] == es.__context__["retcode"] == 1


def test_job_load_of_an_ignored_function_is_not_stored(es):
    es.init()
    assert es.store(*new_event(fun="saltutil.find_job")) == "ignored"
    assert rows(es, "SELECT jid FROM jids") == []
