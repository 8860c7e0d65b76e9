"""
PostgreSQL behind the storage seam (:py:class:`~saltext.eventstore.store.Store`),
through psycopg 3, in the pgjsonb returner's layout: its connections (UTC,
TLS settings, a host list that keeps the primary), the MySQL-worded SQL in
PostgreSQL's words, jsonb read as text, which SQLSTATEs mean a conflict or a
row refused as such (with a reason that quotes no data), and its catalog.
"""

import re

from saltext.eventstore.schema import (
    ADD_UNIQUE_KEY,
    CREATE_DUPLICATES_TABLE,
    DELETE_DUPLICATES,
    DROP_DUPLICATES_TABLE,
    ADD_EVENT_TIME_KEY,
    ALL_TABLES,
    EVENTS_TABLE,
    POSTGRES_TABLES,
    RETURNER_TABLES,
    Schema,
)
from saltext.eventstore.store import RowRefused, RowTooBig, Store, index_columns
from saltext.eventstore.times import UTC

try:
    import psycopg
    import psycopg.types.datetime
    import psycopg.types.string

    HAS_PSYCOPG = True
except ImportError:
    HAS_PSYCOPG = False


def postgres_sql(statement):
    """
    A statement written in MySQL's words, in PostgreSQL's: psycopg takes the
    same ``%s`` placeholders; identifiers are quoted ``"..."``; ``INSERT
    IGNORE`` is ``ON CONFLICT DO NOTHING``; text already compares byte by
    byte (``COLLATE "C"``), so no ``CAST(... AS BINARY)``.
    """
    statement = re.sub(r"CAST\((`\w+`) AS BINARY\)", r"\1", statement).replace("`", '"')
    if statement.startswith("INSERT IGNORE INTO "):
        statement = (
            "INSERT INTO " + statement[len("INSERT IGNORE INTO ") :] + " ON CONFLICT DO NOTHING"
        )
    return statement


#: SQLSTATEs of a row PostgreSQL refuses as such: data exceptions (too long
#: for varchar(50), a \u0000 jsonb cannot hold), integrity violations, and
#: a value over a limit of the server's (a jsonb too big).
POSTGRES_ROW_STATES = ("22", "23", "54000")
#: SQLSTATEs of a transaction that lost to another (serialization failure,
#: deadlock): worth running again as it is.
POSTGRES_CONFLICT_STATES = ("40001", "40P01")

if HAS_PSYCOPG:

    class JsonAsText(psycopg.types.string.TextLoader):
        """
        jsonb columns read as the JSON text they hold, as MySQL's and
        SQLite's text columns are, not parsed by the driver.
        """

    class NaiveUtc(psycopg.types.datetime.TimestamptzLoader):
        """
        ``timestamptz`` read as naive UTC, as MySQL's ``TIMESTAMP`` (with the
        session in UTC) and SQLite's ``CURRENT_TIMESTAMP`` read.
        """

        def load(self, data):
            return super().load(data).astimezone(UTC).replace(tzinfo=None)


class PostgresStore(Store):
    dialect = "postgres"
    tables = POSTGRES_TABLES

    def sql(self, statement):
        return POSTGRES_STATEMENTS.get(statement) or postgres_sql(statement)

    def connect(self):
        opts = self.config.postgres
        settings = {
            key: opts[key]
            for key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl")
            if opts.get(key)
        }
        if "," in str(opts["host"]):
            # Several servers (eventstore: postgres_hosts): the primary.
            settings["target_session_attrs"] = "read-write"
        conn = psycopg.connect(
            host=opts["host"],
            port=str(opts["port"]),
            user=opts["user"],
            password=opts["pass"] or "",
            dbname=opts["db"],
            # A dead server must not hold a reactor thread for long.
            connect_timeout=opts["connect_timeout"] or 3,
            # A server gone silent mid-statement (a network partition, a
            # frozen primary) fails the statement within about a minute,
            # as MySQL's read_timeout does, instead of holding the thread.
            tcp_user_timeout=60000,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
            # UTC: query() and prune() read and compare alter_time in UTC.
            options="-c TimeZone=UTC",
            application_name="eventstore",
            autocommit=False,
            **settings,
        )
        for name in ("json", "jsonb"):
            conn.adapters.register_loader(name, JsonAsText)
        conn.adapters.register_loader("timestamptz", NaiveUtc)
        return conn

    def insert(self, rows):
        try:
            return super().insert(rows)
        except psycopg.Error as exc:
            if not self.is_row_error(exc):
                raise
            # PostgreSQL's message quotes the refused value (CONTEXT: JSON
            # data, line 1: ...): the reason, which is logged, keeps only what
            # is wrong, not the data.  psycopg's own (a NUL in a text column,
            # refused before sending) quote nothing.
            diag = exc.diag
            detail = f" ({diag.message_detail})" if diag.message_detail else ""
            raise RowRefused(f"{diag.message_primary or exc}{detail}") from exc

    def _insert_new(self, cur, statement, params):
        # ON CONFLICT DO NOTHING needs INSERT only; rowcount adds up the new rows.
        cur.executemany(self.sql(statement) + " ON CONFLICT DO NOTHING", params)
        return cur.rowcount

    def create_table_like(self, source, target):
        def work(cur):
            cur.execute(f'CREATE TABLE IF NOT EXISTS "{target}" (LIKE "{source}" INCLUDING ALL)')

        self.run(work)

    def is_row_error(self, exc):
        if isinstance(exc, (RowTooBig, RowRefused, psycopg.DataError, psycopg.IntegrityError)):
            return True
        return str(getattr(exc, "sqlstate", None) or "").startswith(POSTGRES_ROW_STATES)

    def is_duplicate(self, exc):
        return getattr(exc, "sqlstate", None) == "23505"  # unique_violation

    def is_conflict(self, exc):
        """
        True when the transaction lost to another one (serialization failure,
        deadlock) and may simply run again: every write of ours is idempotent.
        """
        return getattr(exc, "sqlstate", None) in POSTGRES_CONFLICT_STATES

    def is_lost_connection(self, exc):
        # A conflict is an OperationalError too, but Store.run asks
        # is_conflict first and runs it again on the same connection.
        return isinstance(
            exc, (psycopg.OperationalError, psycopg.InterfaceError)
        ) and not self.is_row_error(exc)

    def describe(self):
        opts = self.config.postgres
        return f"postgresql://{opts['user']}@{opts['host']}:{opts['port']}/{opts['db']}"

    def server_version(self):
        return "PostgreSQL " + self.select("SHOW server_version", ())[0][0]

    def schema(self):
        tables = {name: None for (name,) in self.select(POSTGRES_TABLES_INFO, ALL_TABLES)}
        unique = {}
        for table, index, column in self.select(POSTGRES_UNIQUE_KEYS, RETURNER_TABLES):
            unique.setdefault(table, {}).setdefault(index, []).append(column)
        return Schema(
            tables,
            {table: {tuple(key) for key in keys.values()} for table, keys in unique.items()},
            {},
            {EVENTS_TABLE: index_columns(self.select(POSTGRES_INDEXES, (EVENTS_TABLE,)))},
        )


# PostgreSQL's catalog, for status, init and migrate: the tables and unique
# keys in the connection's schema (search_path), readable by any user.
POSTGRES_TABLES_INFO = (
    "SELECT table_name FROM information_schema.tables"
    " WHERE table_schema = current_schema() AND table_name IN (%s, %s, %s, %s)"
)
POSTGRES_UNIQUE_KEYS = (
    "SELECT t.relname, i.relname, a.attname FROM pg_index x"
    " JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid"
    " JOIN unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) ON true"
    " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum"
    " WHERE x.indisunique AND t.relnamespace = current_schema()::regnamespace"
    " AND t.relname IN (%s, %s) ORDER BY t.relname, i.relname, k.n"
)
POSTGRES_INDEXES = (
    "SELECT i.relname, a.attname FROM pg_index x"
    " JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid"
    " JOIN unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) ON true"
    " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum"
    " WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = %s"
    " ORDER BY i.relname, k.n"
)


# The few statements PostgreSQL words otherwise than by postgres_sql's rules:
# migrate's, on its own temporary table.
POSTGRES_STATEMENTS = {
    ADD_UNIQUE_KEY: 'ALTER TABLE "salt_returns" ADD CONSTRAINT "salt_returns_jid_id_key" UNIQUE ("jid", "id")',
    ADD_EVENT_TIME_KEY: (
        'CREATE INDEX IF NOT EXISTS "idx_salt_events_alter_time" ON "salt_events" ("alter_time")'
    ),
    DROP_DUPLICATES_TABLE: 'DROP TABLE IF EXISTS pg_temp."eventstore_duplicates"',
    CREATE_DUPLICATES_TABLE: (
        'CREATE TEMPORARY TABLE "eventstore_duplicates" ("n" BIGINT GENERATED ALWAYS AS IDENTITY'
        ' PRIMARY KEY, "jid" varchar(255) NOT NULL, "id" varchar(255) NOT NULL)'
    ),
    DELETE_DUPLICATES: (
        'DELETE FROM "salt_returns" AS "r" USING "eventstore_duplicates" AS "d"'
        ' WHERE "r"."jid" = "d"."jid" AND "r"."id" = "d"."id" AND "d"."n" > %s AND "d"."n" <= %s'
    ),
}
