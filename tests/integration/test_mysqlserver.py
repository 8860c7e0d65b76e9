"""The MySQL fixtures give each test its own working utf8mb4 database."""

import pymysql

from mysqlserver import parse_url


def test_database_round_trips_a_four_byte_emoji(mysql_server, mysql_database):
    # utf8mb3 ("utf8") would reject or mangle characters outside the BMP.
    with mysql_server.connect(mysql_database) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (s VARCHAR(10))")
        cur.execute("INSERT INTO t VALUES (%s)", ("🧂",))
        cur.execute("SELECT s FROM t")
        assert cur.fetchone() == ("🧂",)


def test_database_starts_empty(mysql_server, mysql_database):
    with mysql_server.connect(mysql_database) as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        assert cur.fetchall() == ()


def test_database_name_starts_with_eventstore_t(mysql_database):
    # The prefix marks what the tests may drop on a shared server.
    assert mysql_database.startswith("eventstore_t_")


def test_each_new_database_gets_a_new_name(mysql_server, mysql_database):
    other = mysql_server.create_database()
    mysql_server.drop_database(other)
    assert other != mysql_database


def test_dropped_database_is_gone(mysql_server):
    name = mysql_server.create_database()
    mysql_server.drop_database(name)
    with mysql_server.connect() as conn, conn.cursor() as cur:
        assert cur.execute("SHOW DATABASES LIKE %s", (name,)) == 0


def test_mysql_opts_are_the_returners_flat_keys(mysql_opts):
    assert sorted(mysql_opts) == [
        "mysql.db",
        "mysql.host",
        "mysql.pass",
        "mysql.port",
        "mysql.user",
    ]
    assert isinstance(mysql_opts["mysql.port"], int)


def test_mysql_opts_reach_the_database_over_tcp_like_the_returner(mysql_opts, mysql_database):
    # Connect as the mysql returner does: TCP, no charset, no unix socket.
    conn = pymysql.connect(
        host=mysql_opts["mysql.host"],
        port=mysql_opts["mysql.port"],
        user=mysql_opts["mysql.user"],
        password=mysql_opts["mysql.pass"],
        database=mysql_opts["mysql.db"],
    )
    with conn, conn.cursor() as cur:
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == (mysql_database,)


def test_url_gives_user_password_host_and_port():
    server = parse_url("mysql://salt:s%40lt@db.example:3307")
    assert (server.user, server.password, server.host, server.port, server.unix_socket) == (
        "salt",
        "s@lt",
        "db.example",
        3307,
        None,
    )


def test_url_without_password_and_port_defaults_to_empty_and_3306():
    server = parse_url("mysql://root@127.0.0.1")
    assert (server.password, server.port) == ("", 3306)


def test_url_may_name_a_unix_socket():
    server = parse_url("mysql://root@localhost?unix_socket=/run/mysqld/mysqld.sock")
    assert server.unix_socket == "/run/mysqld/mysqld.sock"
