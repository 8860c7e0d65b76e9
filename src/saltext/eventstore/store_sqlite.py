"""
SQLite behind the storage seam (:py:class:`~saltext.eventstore.store.Store`):
the zero-setup backend, one file (mode 0600) in the master's cachedir, in
WAL mode so that ``salt-run`` reads while the reactor writes; it makes its
own tables.  The MySQL-worded SQL is translated here.
"""

import os
import re
import sqlite3
import threading

from saltext.eventstore.schema import ALL_TABLES, EVENTS_TABLE, SQLITE_TABLES, Schema
from saltext.eventstore.store import RowTooBig, Store

SQLITE_SETUP_LOCK = threading.Lock()


class SQLiteStore(Store):
    dialect = "sqlite"
    tables = SQLITE_TABLES

    def sql(self, statement):
        return (
            statement.replace("%s", "?")
            .replace("CHAR_LENGTH(", "LENGTH(")
            .replace("INSERT IGNORE INTO", "INSERT OR IGNORE INTO")
        )

    def _insert_new(self, cur, statement, params):
        cur.executemany(self.sql(statement) + " ON CONFLICT DO NOTHING", params)
        return cur.rowcount

    def create_table_like(self, source, target):
        # SQLite has no CREATE TABLE ... LIKE: rename the source's own DDL.
        def work(cur):
            cur.execute("SELECT `sql` FROM `sqlite_master` WHERE `name` = ?", (source,))
            (ddl,) = cur.fetchone()
            head = re.match(r"CREATE TABLE\s+(\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|\S+)", ddl)
            cur.execute(f"CREATE TABLE IF NOT EXISTS `{target}`" + ddl[head.end() :])

        self.run(work)

    def connect(self):
        path = self.config.sqlite_path
        if not os.path.exists(path):
            # Returns can hold secrets: the file is the master's alone.
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(path, timeout=10)
        # Ten reactor threads opening the file at once: switching to WAL does
        # not wait for a busy database, so one thread of a process at a time.
        with SQLITE_SETUP_LOCK:
            # WAL lets salt-run read while the reactor writes, from another process.
            conn.execute("PRAGMA journal_mode=WAL")
            # The zero-setup backend makes its own tables, once per connection.
            for statement in self.tables:
                conn.execute(statement)
            conn.commit()
        return conn

    def is_row_error(self, exc):
        # OperationalError (locked, cannot open, disk full) is about the database.
        return isinstance(
            exc, (RowTooBig, sqlite3.DataError, sqlite3.IntegrityError, sqlite3.InterfaceError)
        )

    def describe(self):
        return f"sqlite://{self.config.sqlite_path}"

    def server_version(self):
        return "SQLite " + self.select("SELECT sqlite_version()", ())[0][0]

    def schema(self):
        def work(cur):
            cur.execute("SELECT `name` FROM `sqlite_master` WHERE `type` = 'table'")
            tables = {name: None for (name,) in cur.fetchall() if name in ALL_TABLES}
            unique, indexes = {}, {}
            for table in tables:
                cur.execute(f"PRAGMA index_list(`{table}`)")
                for _, index, is_unique, *_ in cur.fetchall():
                    cur.execute(f"PRAGMA index_info(`{index}`)")
                    key = tuple(name for _, _, name in sorted(cur.fetchall()))
                    indexes.setdefault(table, set()).add(key)
                    if is_unique:
                        unique.setdefault(table, set()).add(key)
            return Schema(tables, unique, {}, {EVENTS_TABLE: indexes.get(EVENTS_TABLE, set())})

        return self.run(work)
