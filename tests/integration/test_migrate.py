"""
A MySQL database made from Salt's documented mysql returner schema, and a
PostgreSQL one made from the pgjsonb returner's: init and status say how it
differs, migrate upgrades it (on MySQL utf8mb4_bin; no duplicate returns, the
unique key on (jid, id)) and keeps every distinct return.
"""

import json

import pytest
from runnerlib import (
    JID,
    PGJSONB_DDL,
    RETURNER_DDL,
    as_runner_job,
    fake_clock,
    load_runner,
    ret_event,
    storing_events,
)


class Db:
    """The test's own connection to the database, in either server's words."""

    def __init__(self, conn, backend):
        self.conn, self.backend = conn, backend

    def rows(self, statement, params=()):
        if self.backend == "postgres":
            cur = self.conn.execute(statement.replace("`", '"'), params)
            return cur.fetchall() if cur.description else []
        with self.conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()


def mysql_db(server, database):
    conn = server.connect(database)
    with conn.cursor() as cur:
        cur.execute(f"ALTER DATABASE `{database}` CHARACTER SET utf8 COLLATE utf8_general_ci")
        for statement in RETURNER_DDL:
            cur.execute(statement)
        cur.execute("SET time_zone = '+00:00'")
    return conn


def postgres_db(server, database):
    conn = server.connect(database, options="-c TimeZone=UTC")
    for statement in PGJSONB_DDL:
        conn.execute(statement)
    return conn


@pytest.fixture
def db(request, backend):
    server = request.getfixturevalue(f"{backend}_server")
    conn = {"mysql": mysql_db, "postgres": postgres_db}[backend](
        server, request.getfixturevalue(f"{backend}_database")
    )
    yield Db(conn, backend)
    conn.close()


@pytest.fixture
def es(db, runner_opts):
    return load_runner(runner_opts)


def put(db, minion, alter_time, marker, jid=JID):
    """
    A return as the returner writes it, stored at ``alter_time``;
    ``marker`` (its return) tells the copies apart.
    """
    full_ret = json.dumps({"id": minion, "jid": jid, "fun": "test.ping", "return": marker})
    db.rows(
        "INSERT INTO salt_returns (fun, jid, `return`, id, success, full_ret, alter_time)"
        " VALUES ('test.ping', %s, %s, %s, '1', %s, %s)",
        (jid, json.dumps(marker), minion, full_ret, alter_time),
    )


def stored(db):
    # Text and seconds from both servers: CONCAT makes jsonb text, CHAR(19) cuts PostgreSQL's offset.
    rows = db.rows(
        "SELECT id, CONCAT(`return`, ''), CAST(alter_time AS CHAR(19)) FROM salt_returns"
        " ORDER BY id, alter_time"
    )
    return [(minion, json.loads(ret), time) for minion, ret, time in rows]


def create_table(db, table):
    with db.cursor() as cur:
        cur.execute(f"SHOW CREATE TABLE `{table}`")
        return cur.fetchone()[1]


def full_columns(conn, table):
    with conn.cursor() as cur:
        cur.execute(f"SHOW FULL COLUMNS FROM `{table}`")
        return [row[:4] for row in cur.fetchall()]  # name, type, collation, null


def test_init_on_a_returner_database_says_what_differs(es):
    said = es.init()
    assert "differ from eventstore's layout" in said and "ready" not in said
    assert (
        "- salt_returns has no unique key on (jid, id): a return stored twice is two rows" in said
    )
    assert "salt-run eventstore.migrate test=True" in said


@pytest.mark.parametrize("backend", ["mysql"])
def test_init_on_a_mysql_returner_database_says_it_is_utf8(es):
    assert "- jids is utf8mb3_general_ci, not utf8mb4_bin" in es.init()


def test_status_on_a_returner_database_says_init_makes_eventstores_own_table(es):
    report = es.status()
    assert report["healthy"] is False
    assert report["problems"] == [
        "table eventstore_dead_letters is missing: salt-run eventstore.init makes it"
    ]


def test_status_after_init_lists_the_differences_but_stays_healthy(es):
    es.init()
    report = es.status()
    assert report["healthy"] is True
    assert (
        "salt_returns has no unique key on (jid, id): a return stored twice is two rows"
        in (report["schema"])
    )


def removal_step(report):
    (step,) = [step for step in report["steps"] if step.startswith("remove ")]
    return step


@pytest.mark.parametrize("backend", ["mysql"])
def test_migrate_test_shows_the_steps_and_changes_nothing(es, db):
    put(db, "web1", "2026-11-26 10:00:01", "first")
    put(db, "web1", "2026-11-26 10:00:02", "again")
    put(db, "web1", "2026-11-26 10:00:03", "and again")
    before = [create_table(db.conn, table) for table in ("jids", "salt_returns")]
    report = es.migrate(test=True)
    assert report["result"] == "Would upgrade (test=True: nothing was changed)"
    assert report["steps"][0].startswith(
        "ALTER TABLE `jids` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    )
    assert "remove 2 duplicate returns of 1 (jid, id) pairs" in report["steps"][2]
    assert report["steps"][3] == es.lib.schema.ADD_UNIQUE_KEY
    assert [create_table(db.conn, table) for table in ("jids", "salt_returns")] == before
    assert len(stored(db)) == 3


@pytest.mark.parametrize("backend", ["postgres"])
def test_migrate_on_postgres_removes_duplicates_then_adds_the_unique_key_and_changes_nothing_in_a_test(
    es, db
):
    put(db, "web1", "2026-11-26 10:00:01", "first")
    put(db, "web1", "2026-11-26 10:00:02", "again")
    before = es._store().schema()
    report = es.migrate(test=True)
    assert report["steps"] == [
        "remove 1 duplicate returns of 1 (jid, id) pairs, keeping the first stored of each"
        " (oldest alter_time, then lowest full_ret)",
        es._store().sql(es.lib.schema.ADD_UNIQUE_KEY),
    ]
    assert (es._store().schema(), len(stored(db))) == (before, 2)


@pytest.mark.parametrize("backend", ["mysql"])
def test_migrate_gives_the_columns_init_makes(es, db, mysql_server, mysql_runner_opts):
    assert es.migrate()["result"] == "Upgraded: the tables have eventstore's layout"
    fresh = mysql_server.create_database()
    try:
        load_runner({**mysql_runner_opts, "mysql.db": fresh}).init()
        by_init = mysql_server.connect(fresh)
        for table in ("jids", "salt_returns"):
            assert full_columns(db.conn, table) == full_columns(by_init, table)
    finally:
        mysql_server.drop_database(fresh)


def test_migrate_keeps_the_first_stored_copy_of_a_duplicated_return(es, db):
    put(db, "web1", "2026-11-26 10:00:02", "second")
    put(db, "web1", "2026-11-26 10:00:01", "first")
    put(db, "web1", "2026-11-26 10:00:03", "third")
    es.migrate()
    assert stored(db) == [("web1", "first", "2026-11-26 10:00:01")]


def test_migrate_breaks_a_tie_in_time_by_the_lowest_full_ret(es, db):
    put(db, "web1", "2026-11-26 10:00:01", "b")
    put(db, "web1", "2026-11-26 10:00:01", "a")
    es.migrate()
    assert stored(db) == [("web1", "a", "2026-11-26 10:00:01")]


def test_migrate_keeps_minion_ids_differing_in_case_apart(es, db):
    put(db, "Web1", "2026-11-26 10:00:01", "upper")
    put(db, "web1", "2026-11-26 10:00:01", "lower")
    es.migrate()
    assert sorted(stored(db)) == [
        ("Web1", "upper", "2026-11-26 10:00:01"),
        ("web1", "lower", "2026-11-26 10:00:01"),
    ]


def test_migrate_leaves_returns_stored_once_as_they_are(es, db):
    put(db, "web1", "2026-11-26 10:00:01", "one")
    put(db, "web2", "2026-11-26 10:00:02", "two", jid="20261126100000000000")
    put(db, "web2", "2026-11-26 10:00:03", "copy", jid="20261126100000000000")
    put(db, "web2", "2026-11-26 10:00:04", "other job", jid="20261126110000000000")
    es.migrate()
    assert stored(db) == [
        ("web1", "one", "2026-11-26 10:00:01"),
        ("web2", "two", "2026-11-26 10:00:02"),
        ("web2", "other job", "2026-11-26 10:00:04"),
    ]


def test_migrate_in_batches_of_one_pair_removes_every_duplicate(es, db):
    for minion in ("a", "b", "c"):
        put(db, minion, "2026-11-26 10:00:01", f"{minion} first")
        put(db, minion, "2026-11-26 10:00:02", f"{minion} again")
    report = es.migrate(batch_size=1)
    assert "remove 3 duplicate returns of 3 (jid, id) pairs" in removal_step(report)
    assert [ret for _, ret, _ in stored(db)] == ["a first", "b first", "c first"]


def test_after_migrate_a_return_stored_again_is_a_duplicate(es):
    es.migrate()
    tag, data = ret_event()
    assert [es.store(tag, data), es.store(tag, data)] == ["stored", "duplicate"]


def test_after_init_and_migrate_four_byte_characters_are_stored(es):
    es.init()  # eventstore's own table, which query reads too
    es.migrate()
    assert es.store(*ret_event(ret="\U0001f680")) == "stored"
    assert es.query(jid=JID) == {"web1": "\U0001f680"}


def test_after_migrate_init_says_ready_and_migrate_has_nothing_to_do(es):
    es.migrate()
    assert "are ready in" in es.init()
    assert es.migrate()["result"] == "Nothing to do: the tables have eventstore's layout"


def test_migrate_keeps_load_rows_whole(es, db):
    load = json.dumps({"fun": "cmd.run", "arg": ["printf grüße"], "jid": JID})
    db.rows("INSERT INTO jids (jid, `load`) VALUES (%s, %s)", (JID, load))
    es.migrate()
    ((kept,),) = db.rows("SELECT CONCAT(`load`, '') FROM jids")
    assert json.loads(kept) == json.loads(load)


def test_migrate_without_the_tables_fails_and_says_to_run_init(runner_opts, db):
    db.rows("DROP TABLE salt_returns")
    es = load_runner(runner_opts)
    assert es.migrate()["result"] == (
        "Failed: table salt_returns missing: salt-run eventstore.init makes it"
    )
    assert es.migrate()["retcode"] == es.__context__["retcode"] == 1


# event_return's own salt_events, as the mysql returner's and pgjsonb's docs make it.
RETURNER_EVENTS_DDL = {
    "mysql": (
        "CREATE TABLE `salt_events` (`id` BIGINT NOT NULL AUTO_INCREMENT, `tag` varchar(255) NOT NULL,"
        " `data` mediumtext NOT NULL, `alter_time` TIMESTAMP DEFAULT CURRENT_TIMESTAMP,"
        " `master_id` varchar(255) NOT NULL, PRIMARY KEY (`id`), KEY `tag` (`tag`))"
        " ENGINE=InnoDB DEFAULT CHARSET=utf8",
    ),
    "postgres": (
        "CREATE SEQUENCE seq_salt_events_id",
        "CREATE TABLE salt_events (id BIGINT NOT NULL UNIQUE DEFAULT nextval('seq_salt_events_id'),"
        " tag varchar(255) NOT NULL, data jsonb NOT NULL,"
        " alter_time TIMESTAMP WITH TIME ZONE DEFAULT NOW(), master_id varchar(255) NOT NULL)",
        "CREATE INDEX idx_salt_events_tag on salt_events (tag)",
        "CREATE INDEX idx_salt_events_data ON salt_events USING gin (data) with (fastupdate=on)",
    ),
}


@pytest.fixture
def returner_events(db):
    for statement in RETURNER_EVENTS_DDL[db.backend]:
        db.rows(statement)
    # A row as event_return writes it.
    db.rows(
        "INSERT INTO salt_events (tag, data, master_id) VALUES (%s, %s, %s)",
        ("salt/beacon/web1/load/", json.dumps({"id": "web1", "data": {"1m": 0.5}}), "old-master"),
    )
    return db


@pytest.mark.parametrize("backend", ["mysql"])
def test_init_says_the_returner_s_salt_events_lacks_the_time_index(es, returner_events):
    assert "- salt_events has no index on (alter_time)" in es.init()


@pytest.mark.parametrize("backend", ["postgres"])
def test_init_adds_the_time_index_to_pgjsonb_s_salt_events(es, returner_events):
    # PostgreSQL's DDL creates each index IF NOT EXISTS.
    es.init()
    assert ("alter_time",) in es._store().schema().indexes["salt_events"]


def test_migrate_upgrades_the_returner_s_salt_events_and_keeps_its_rows(es, returner_events):
    es.init()
    report = es.migrate()
    assert report["result"] == "Upgraded: the tables have eventstore's layout", report
    assert es.lib.schema.schema_differences(es._store().schema()) == []
    storing_events(es, "salt/beacon/*")
    assert es.store("salt/beacon/web2/load/", {"id": "web2", "emoji": "😀"}) == "stored"
    assert [(e["sender"], e["master_id"]) for e in es.events()["events"]] == [
        ("web2", "es-master"),
        ("web1", "old-master"),
    ]


@pytest.mark.parametrize("backend", ["mysql"])
def test_migrate_converts_the_returner_s_salt_events_to_utf8mb4_bin(es, returner_events, db):
    es.init()
    es.migrate()
    assert {
        collation for _, _, collation, _ in full_columns(db.conn, "salt_events") if collation
    } == {"utf8mb4_bin"}


def test_a_long_migrate_reports_pairs_done_and_left_then_its_summary(es, db):
    for n in range(30):
        put(db, f"m{n:02d}", "2026-11-26 10:00:01", "first")
        put(db, f"m{n:02d}", "2026-11-26 10:00:02", "again")
    job = as_runner_job(es)
    fake_clock(es).tick = 1.0  # each reading of the clock takes a second
    report = es.migrate(batch_size=1, progress=5)
    reports = [r for r in job.progress() if r["operation"] == "migrate: duplicate returns"]
    done = [r["done"] for r in reports]
    assert len(done) >= 3 and done == sorted(set(done))
    assert all(r["done"] + r["left"] == 30 for r in reports)
    assert report["result"] == "Upgraded: the tables have eventstore's layout"
    assert "remove 30 duplicate returns of 30 (jid, id) pairs" in removal_step(report)
