"""
The least-privilege grants of the README and docs/operations.md, each tried on
a MySQL user, and on a PostgreSQL role, that has exactly those privileges:
what storing, reading, pruning, init and migrate need.
"""

import secrets

import pytest
from runnerlib import JID, RETURNER_DDL, load_runner, new_event, ret_event

STORING = "SELECT, INSERT"
TABLES = ("jids", "salt_returns")
# Where a row the database refuses as such is kept; query reads it too.
DEAD_LETTERS = "`eventstore_dead_letters`"
# What each server says when a privilege is missing.
DENIED = {"mysql": "{privilege} command denied", "postgres": "permission denied for table"}


def mysql_user(server, database, opts, grants):
    user, password = f"es_{secrets.token_hex(4)}", secrets.token_hex(8)
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
        for privileges, on in grants:
            cur.execute(f"GRANT {privileges} ON `{database}`.{on} TO %s@'%%'", (user,))
    runner = load_runner({**opts, "mysql.user": user, "mysql.pass": password})

    def drop():
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("DROP USER %s@'%%'", (user,))

    return runner, drop


def postgres_role(server, database, opts, grants):
    # "*" is the database's schema: CREATE there is what makes tables.
    role, password = f"es_{secrets.token_hex(4)}", secrets.token_hex(8)
    with server.connect(database) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        for privileges, on in grants:
            target = "SCHEMA public" if on == "*" else "TABLE " + on.replace("`", '"')
            conn.execute(f"GRANT {privileges} ON {target} TO {role}")
    runner = load_runner({**opts, "returner.pgjsonb.user": role, "returner.pgjsonb.pass": password})

    def drop():
        with server.connect(database) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")

    return runner, drop


MAKE_USER = {"mysql": mysql_user, "postgres": postgres_role}


@pytest.fixture
def user_with(request, backend, runner_opts):
    """A runner logged in as a new user with just the given grants."""
    server = request.getfixturevalue(f"{backend}_server")
    database = request.getfixturevalue(f"{backend}_database")
    drops = []

    def make(*grants):
        runner, drop = MAKE_USER[backend](server, database, runner_opts, grants)
        drops.append(drop)
        return runner

    yield make
    for drop in drops:
        drop()


@pytest.fixture
def tables(runner_opts):
    """The tables, made by the admin; returns the admin's runner."""
    admin = load_runner(runner_opts)
    admin.init()
    return admin


def on_both(privileges):
    return [(privileges, f"`{table}`") for table in TABLES]


def on_all(privileges):
    return [*on_both(privileges), (privileges, DEAD_LETTERS)]


OLD = "20200101000000000000"


def test_storing_needs_select_and_insert_only(tables, user_with):
    es = user_with(*on_all(STORING))
    tag, data = ret_event()
    assert [es.store(tag, data), es.store(tag, data)] == ["stored", "duplicate"]
    assert [es.store(*new_event()), es.store(*new_event())] == ["stored", "duplicate"]


def test_storing_without_insert_is_refused_and_spooled(tables, user_with, backend, caplog):
    es = user_with(*on_all("SELECT"))
    assert es.store(*ret_event()) == "spooled"
    assert DENIED[backend].format(privilege="INSERT") in caplog.text


def test_reading_needs_select_only(tables, user_with):
    tables.store(*new_event())
    tables.store(*ret_event(ret="read me"))
    es = user_with(*on_all("SELECT"))
    assert es.query(jid=JID) == {"web1": "read me"}
    assert es.jobs()["jobs"][0]["Returned"] == 1
    assert es.status()["healthy"] is True


def test_prune_needs_delete(tables, user_with):
    tables.store(*new_event(jid=OLD))
    es = user_with(*on_both("SELECT, DELETE"))
    assert es.prune(before="2021-01-01")["jids"] == 1


def test_a_user_that_stores_cannot_prune(tables, user_with, backend):
    refused = user_with(*on_all(STORING)).prune(before="2021-01-01")
    assert DENIED[backend].format(privilege="DELETE") in refused["Error"]


# MySQL grants on tables yet to be made; PostgreSQL makes the maker of a table its owner.
ARCHIVE_GRANTS = {
    "mysql": [("CREATE, INSERT", f"`{table}_archive`") for table in TABLES],
    "postgres": [("CREATE", "*")],
}


def test_prune_archive_needs_create_and_insert_on_the_archive_tables(tables, user_with, backend):
    tables.store(*new_event(jid=OLD))
    es = user_with(*on_both("SELECT, DELETE"), *ARCHIVE_GRANTS[backend])
    assert es.prune(before="2021-01-01", archive=True)["jids"] == 1


def test_init_needs_create(user_with):
    assert "are ready in" in user_with(("CREATE", "*")).init()


@pytest.mark.parametrize("backend", ["mysql"])
def test_migrate_needs_alter_create_insert_select_delete_and_temporary_tables(
    mysql_server, mysql_database, mysql_runner_opts, user_with
):
    with mysql_server.connect(mysql_database) as conn, conn.cursor() as cur:
        for statement in RETURNER_DDL:
            cur.execute(statement)
    admin = load_runner(mysql_runner_opts)
    admin.store(*ret_event())
    admin.store(*ret_event())  # no unique key yet: a duplicate
    es = user_with(
        *on_both("ALTER, CREATE, INSERT, SELECT, DELETE"), ("CREATE TEMPORARY TABLES", "*")
    )
    migrated = es.migrate()
    assert migrated["result"] == "Upgraded: the tables have eventstore's layout"
    assert "remove 1 duplicate returns" in migrated["steps"][2]
