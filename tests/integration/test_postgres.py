"""
What only the PostgreSQL backend has to get right: the pgjsonb returner's
layout, what jsonb cannot hold, and the server's own behaviour.
"""

import json
import socket

import psycopg
import pytest
from runnerlib import JID, REPO, load_runner, pgjsonb_keys, ret_event


@pytest.fixture
def es(postgres_runner_opts):
    runner = load_runner(postgres_runner_opts)
    runner.init()
    return runner


# The pgjsonb returner's documented salt_returns, column by column.
RETURNER_COLUMNS = [
    ("fun", "character varying"),
    ("jid", "character varying"),
    ("return", "jsonb"),
    ("id", "character varying"),
    ("success", "character varying"),
    ("full_ret", "jsonb"),
    ("alter_time", "timestamp with time zone"),
]


def columns(conn, table):
    return conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()


def indexes(conn, table):
    return sorted(
        conn.execute(
            "SELECT indexname, regexp_replace(indexdef, '^.* USING ', '') FROM pg_indexes"
            " WHERE schemaname = current_schema() AND tablename = %s",
            (table,),
        ).fetchall()
    )


def dead_letter(es):
    ((reason, data),) = es._store().select(
        "SELECT `reason`, `data` FROM `eventstore_dead_letters` WHERE `jid` = %s", (JID,)
    )
    return reason, json.loads(data)


def test_init_makes_the_pgjsonb_returner_layout(es, postgres_server, postgres_database):
    with postgres_server.connect(postgres_database) as conn:
        assert columns(conn, "salt_returns") == RETURNER_COLUMNS
        assert columns(conn, "jids") == [("jid", "character varying"), ("load", "jsonb")]


def test_init_makes_the_returners_gin_indexes_and_the_unique_keys(
    es, postgres_server, postgres_database
):
    with postgres_server.connect(postgres_database) as conn:
        assert ("idx_jids_jsonb", "gin (load) WITH (fastupdate='on')") in indexes(conn, "jids")
        found = dict(indexes(conn, "salt_returns"))
    assert found["idx_salt_returns_return"] == "gin (return) WITH (fastupdate='on')"
    assert found["idx_salt_returns_full_ret"] == "gin (full_ret) WITH (fastupdate='on')"
    assert found["salt_returns_jid_id_key"] == "btree (jid, id)"
    assert {"idx_salt_returns_id", "idx_salt_returns_fun"} <= set(found)


def test_sql_file_creates_the_same_tables_as_init(es, postgres_server, postgres_database):
    other = postgres_server.create_database()
    try:
        with (
            postgres_server.connect(other) as conn,
            postgres_server.connect(postgres_database) as by_init,
        ):
            conn.execute((REPO / "sql" / "postgres.sql").read_text())
            for table in ("jids", "salt_returns", "eventstore_dead_letters"):
                assert columns(conn, table) == columns(by_init, table)
                assert indexes(conn, table) == indexes(by_init, table)
    finally:
        postgres_server.drop_database(other)


def test_sql_file_names_no_database():
    script = (REPO / "sql" / "postgres.sql").read_text().upper()
    assert "CREATE DATABASE" not in script and "\\C " not in script


def test_stored_rows_answer_the_jsonb_queries_pgjsonb_sites_run(es):
    es.store(*ret_event(minion="web1", fun="cmd.run", ret={"stdout": "ok"}, success=False))
    rows = es._store().select(
        "SELECT id, full_ret->>'retcode', return->>'stdout' FROM salt_returns"
        " WHERE full_ret @> %s::jsonb",
        (json.dumps({"fun": "cmd.run"}),),
    )
    assert rows == [("web1", "1", "ok")]


def test_a_nul_in_a_return_is_kept_whole_as_a_dead_letter(es):
    text = "before \x00 after"
    assert es.store(*ret_event(ret=text)) == "dead-lettered"
    reason, data = dead_letter(es)
    assert "\\u0000 cannot be converted to text" in reason
    assert data["return"] == text


def test_a_lone_surrogate_in_a_return_is_kept_whole_as_a_dead_letter(es):
    text = "lone \udc80"
    assert es.store(*ret_event(ret=text)) == "dead-lettered"
    assert dead_letter(es)[1]["return"] == text


def test_query_shows_a_return_jsonb_refused_as_not_stored(es):
    es.store(*ret_event(ret="NUL \x00"))
    (shown,) = es.query(jid=JID).values()
    assert shown.startswith(
        "Not stored: the database refused it: unsupported Unicode escape sequence"
    )


def test_the_dead_letters_reason_quotes_none_of_the_return(es, caplog):
    es.store(*ret_event(ret="secret-token \x00"))
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "secret-token" not in dead_letter(es)[0] and "secret-token" not in logged


def test_a_nul_among_good_returns_in_a_batch_costs_only_its_own_row(es):
    events = [ret_event(minion=f"web{n}", ret="NUL \x00" if n == 1 else "fine") for n in range(3)]
    counts = es.store_events([{"tag": tag, "data": data} for tag, data in events])
    assert (counts["stored"], counts["dead-lettered"]) == (2, 1)


def test_store_reconnects_after_the_server_drops_its_connection(es, postgres_server):
    es.store(*ret_event(minion="before"))
    (pid,) = es._store().select("SELECT pg_backend_pid()", ())[0]
    with postgres_server.connect() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert es.store(*ret_event(minion="after")) == "stored"


def test_a_host_list_skips_a_server_that_is_down(es, postgres_server, postgres_database, tmp_path):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{unused.getsockname()[1]}"
    opts = pgjsonb_keys(postgres_server, postgres_database)
    hosts = [down, f"{postgres_server.host}:{postgres_server.port}"]
    runner = load_runner(
        dict(
            opts,
            cachedir=str(tmp_path),
            eventstore={"verify_returns": False, "postgres_hosts": hosts},
        )
    )
    assert runner.store(*ret_event(minion="via-second")) == "stored"
    assert "via-second" in es.query(jid=JID)


@pytest.mark.parametrize(
    "error, conflict",
    [
        (psycopg.errors.SerializationFailure, True),
        (psycopg.errors.DeadlockDetected, True),
        (psycopg.errors.AdminShutdown, False),
        (psycopg.errors.UntranslatableCharacter, False),
    ],
)
def test_a_lost_serialization_or_deadlock_is_a_conflict_worth_running_again(es, error, conflict):
    store = es._store()
    assert store.is_conflict(error()) is conflict
    assert store.is_lost_connection(error()) is (
        error is not psycopg.errors.UntranslatableCharacter
    )


def test_a_nul_in_a_text_column_is_kept_on_disk_when_even_the_dead_letters_refuse_it(es):
    # A NUL in the function name: no text column of PostgreSQL's holds it, the dead letters' neither.
    assert es.store(*ret_event(fun="test.\x00ping")) == "dead-lettered"
    dead = es.status()["dead_letters"]
    assert (dead["on disk"], dead["in the table"]) == (1, 0)
    (shown,) = es.query(jid=JID).values()
    assert shown.startswith(
        "Not stored: the database refused it: PostgreSQL text fields cannot contain NUL"
    )
