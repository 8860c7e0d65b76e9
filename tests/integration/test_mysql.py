"""
What only the MySQL backend has to get right: the server's own behaviour.
"""

import pytest
from runnerlib import JID, REPO, count, load_runner, ret_event

RETURNER_COLUMNS = [
    ("fun", "varchar(50)"),
    ("jid", "varchar(255)"),
    ("return", "mediumtext"),
    ("id", "varchar(255)"),
    ("success", "varchar(10)"),
    ("full_ret", "mediumtext"),
    ("alter_time", "timestamp"),
]


@pytest.fixture
def mysql_opts(mysql_opts, tmp_path):
    return dict(mysql_opts, cachedir=str(tmp_path), eventstore={"verify_returns": False})


@pytest.fixture
def es(mysql_opts):
    runner = load_runner(mysql_opts)
    runner.init()
    return runner


def columns(conn, table):
    with conn.cursor() as cur:
        cur.execute(f"SHOW COLUMNS FROM `{table}`")
        return [(name, kind) for name, kind, *_ in cur.fetchall()]


def test_init_makes_the_mysql_returner_layout(es, mysql_server, mysql_database):
    conn = mysql_server.connect(mysql_database)
    assert columns(conn, "salt_returns") == RETURNER_COLUMNS
    assert columns(conn, "jids") == [("jid", "varchar(255)"), ("load", "mediumtext")]


def test_sql_file_creates_the_same_tables_as_init(mysql_server, mysql_database, es):
    by_init = mysql_server.connect(mysql_database)
    other = mysql_server.create_database()
    try:
        conn = mysql_server.connect(other)
        script = (REPO / "sql" / "mysql.sql").read_text()
        with conn.cursor() as cur:
            for statement in filter(str.strip, script.split(";\n")):
                cur.execute(statement)
        for table in ("jids", "salt_returns"):
            assert columns(conn, table) == columns(by_init, table)
    finally:
        mysql_server.drop_database(other)


def test_sql_file_names_no_database(mysql_server):
    script = (REPO / "sql" / "mysql.sql").read_text().upper()
    assert "CREATE DATABASE" not in script and "USE " not in script


def test_tables_are_utf8mb4(es, mysql_server, mysql_database):
    conn = mysql_server.connect(mysql_database)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, TABLE_COLLATION FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
            (mysql_database,),
        )
        assert all(coll.startswith("utf8mb4") for _, coll in cur.fetchall())


def test_store_reconnects_after_the_server_drops_its_connection(es, mysql_server):
    es.store(*ret_event(minion="before"))
    conn_id = es._store()._connection().thread_id()
    admin = mysql_server.connect()
    with admin.cursor() as cur:
        cur.execute(f"KILL {int(conn_id)}")
    assert es.store(*ret_event(minion="after")) == "stored"
    assert sorted(es.query(jid=JID)) == ["after", "before"]


def test_store_reconnects_after_pymysql_was_installed_as_mysqldb(mysql_opts, mysql_server):
    # What saltext-mysql's returner does when the master loads it: afterwards
    # pymysql.err is a second copy of the module, whose classes nothing raises.
    import pymysql

    pymysql.install_as_MySQLdb()
    import MySQLdb.err  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import

    es = load_runner(mysql_opts)
    es.init()
    es.store(*ret_event(minion="before"))
    with mysql_server.connect().cursor() as cur:
        cur.execute(f"KILL {int(es._store()._connection().thread_id())}")
    assert es.store(*ret_event(minion="after")) == "stored"


def test_store_without_tables_spools_and_logs_the_missing_table(mysql_opts, caplog):
    es = load_runner(mysql_opts)  # no init()
    assert es.store(*ret_event()) == "spooled"
    assert "salt_returns' doesn't exist" in caplog.text


@pytest.fixture
def lax_server_default(mysql_server):
    """
    The server's default sql_mode without strictness, as on older MySQL and
    many distributions, for the sessions opened during the test.
    """
    admin = mysql_server.connect()
    with admin.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.sql_mode")
        (saved,) = cur.fetchone()
        cur.execute("SET GLOBAL sql_mode = ''")
    try:
        yield
    finally:
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL sql_mode = %s", (saved,))
        admin.close()


def test_runner_sessions_are_strict_whatever_the_server_default(lax_server_default, mysql_opts):
    es = load_runner(mysql_opts)
    (mode,) = es._store().select("SELECT @@SESSION.sql_mode", ())[0]
    assert "STRICT_TRANS_TABLES" in mode.split(",")


def test_a_value_too_long_for_its_column_is_refused_by_the_server_not_cut(
    lax_server_default, mysql_opts
):
    es = load_runner(mysql_opts)
    es.init()
    # Past the runner's own cut to the column's width, straight to the
    # writer: only the server decides.
    _, data = ret_event()
    row = es.lib.rows.return_row(JID, "web1", data)._replace(fun="a_custom_module." + "f" * 50)
    assert es._runtime().writer.write(row) == "dead-lettered"
    assert count(es) == 0


def test_text_is_escaped_as_pymysql_escapes_it():
    import pymysql.converters

    es = load_runner({})
    text = "".join(chr(n) for n in range(128)) + "grüße \U0001f680 \\' \\\\\" '"
    assert es.lib.store_mysql.mysql_escape(text) == pymysql.converters.escape_string(text)


def test_a_server_without_backslash_escapes_stores_text_verbatim(es, mysql_server):
    text = 'it\'s \\ a "path" C:\\x\\'
    store = es._store()
    store.select("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')", ())
    es.store(*ret_event(minion="o'brien", ret=text))
    assert es.query(jid=JID) == {"o'brien": text}
