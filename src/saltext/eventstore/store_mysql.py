"""
MySQL and MariaDB (a Galera cluster too) behind the storage seam
(:py:class:`~saltext.eventstore.store.Store`), through PyMySQL: its
connections (UTC, strict, utf8mb4, short timeouts, faster escaping), which
of its errors mean a duplicate, a conflict, a node that takes no writes or
a row refused as such, and its catalog (``information_schema``).
"""

from saltext.eventstore.config import host_name
from saltext.eventstore.schema import (
    ALL_TABLES,
    EVENTS_TABLE,
    MYSQL_TABLES,
    RETURNER_TABLES,
    Schema,
    TextColumn,
)
from saltext.eventstore.store import RowTooBig, Store, index_columns

try:
    import pymysql
    from pymysql.constants import SERVER_STATUS

    HAS_PYMYSQL = True
except ImportError:
    HAS_PYMYSQL = False


def mysql_escape(text):
    """
    ``text`` escaped for a quoted MySQL string literal, exactly as PyMySQL's
    ``escape_string`` does it (backslash escapes).
    """
    return (
        text.replace("\\", "\\\\")
        .replace("\0", "\\0")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\032", "\\Z")
        .replace("'", "\\'")
        .replace('"', '\\"')
    )


if HAS_PYMYSQL:

    class Connection(pymysql.connections.Connection):
        """
        PyMySQL escapes text one character at a time (``str.translate`` with
        a table of strings): 0.9 ms for a 40 kB state return, half of what
        storing it costs.  One ``str.replace`` per character to escape gives
        the same literal six times faster.
        """

        def escape(self, obj, mapping=None):
            if type(obj) is str and not (  # pylint: disable=unidiomatic-typecheck
                self.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES
            ):
                return "'" + mysql_escape(obj) + "'"
            return super().escape(obj, mapping)


DUPLICATE_KEY = 1062  # ER_DUP_ENTRY: the row is stored already


def pymysql_error(exc, *names):
    """
    True when ``exc`` is one of PyMySQL's errors called ``names``.  By name,
    not by class: Salt's mysql returner runs ``pymysql.install_as_MySQLdb()``
    and imports ``MySQLdb.err``, a second copy of ``pymysql.err``, and in a
    process that loaded both (the master, salt-run, a test run) which copy's
    classes a connection raises cannot be relied on.
    """
    return any(
        cls.__name__ in names and cls.__module__ in ("pymysql.err", "MySQLdb.err")
        for cls in type(exc).__mro__
    )


def is_duplicate_key(exc):
    return pymysql_error(exc, "IntegrityError") and exc.args[:1] == (DUPLICATE_KEY,)


#: A transaction that lost to another and can run again as it is: a deadlock,
#: which is also how MariaDB reports a Galera certification conflict (1213);
#: a lock wait timeout (1205); MySQL group replication's certification
#: failure, "Plugin instructed the server to rollback" (3101).
MYSQL_CONFLICT_ERRNOS = {1213, 1205, 3101}

#: A server that is up and takes no writes: a Galera node outside the primary
#: component or not synced ("WSREP has not yet prepared node for application
#: use", 1047), read_only or super_read_only (1290; a group replication secondary).
MYSQL_NOT_READY_ERRNOS = {1047, 1290}


def mysql_errno(exc):
    """
    The server's error number of one of PyMySQL's errors, else ``None``.  Pure.
    """
    if pymysql_error(exc, "MySQLError") and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def is_mysql_conflict(exc):
    return mysql_errno(exc) in MYSQL_CONFLICT_ERRNOS


def is_mysql_not_ready(exc):
    return mysql_errno(exc) in MYSQL_NOT_READY_ERRNOS


# MySQL errors about the row itself: data too long, bad string, packet too big.
MYSQL_ROW_ERRNOS = {1153, 1366, 1406, 1264, 1265, 1292}

# MySQL's catalog, for status, init and migrate (SQLite's is read with PRAGMAs).
MYSQL_TABLES_INFO = (
    "SELECT `TABLE_NAME`, `TABLE_COLLATION` FROM `information_schema`.`TABLES`"
    " WHERE `TABLE_SCHEMA` = DATABASE() AND `TABLE_NAME` IN (%s, %s, %s, %s)"
)
MYSQL_UNIQUE_KEYS = (
    "SELECT `TABLE_NAME`, `INDEX_NAME`, `COLUMN_NAME` FROM `information_schema`.`STATISTICS`"
    " WHERE `TABLE_SCHEMA` = DATABASE() AND `TABLE_NAME` IN (%s, %s) AND `NON_UNIQUE` = 0"
    " ORDER BY `TABLE_NAME`, `INDEX_NAME`, `SEQ_IN_INDEX`"
)
MYSQL_TEXT_COLUMNS = (
    "SELECT `TABLE_NAME`, `COLUMN_NAME`, `DATA_TYPE`, `COLUMN_TYPE`, `COLLATION_NAME`,"
    " `IS_NULLABLE` FROM `information_schema`.`COLUMNS` WHERE `TABLE_SCHEMA` = DATABASE()"
    " AND `TABLE_NAME` IN (%s, %s, %s) AND `COLLATION_NAME` IS NOT NULL"
    " ORDER BY `TABLE_NAME`, `ORDINAL_POSITION`"
)
MYSQL_INDEXES = (
    "SELECT `INDEX_NAME`, `COLUMN_NAME` FROM `information_schema`.`STATISTICS`"
    " WHERE `TABLE_SCHEMA` = DATABASE() AND `TABLE_NAME` = %s"
    " ORDER BY `INDEX_NAME`, `SEQ_IN_INDEX`"
)


class MySQLStore(Store):
    dialect = "mysql"
    tables = MYSQL_TABLES

    def is_lost_connection(self, exc):
        return pymysql_error(exc, "OperationalError", "InterfaceError")

    def is_duplicate(self, exc):
        return is_duplicate_key(exc)

    def is_conflict(self, exc):
        return is_mysql_conflict(exc)

    def is_not_ready(self, exc):
        return is_mysql_not_ready(exc)

    def hosts(self):
        return self.config.mysql["hosts"]

    def connect_to(self, host):
        opts = self.config.mysql
        ssl = {
            name: opts[f"ssl_{name}"] for name in ("ca", "cert", "key") if opts.get(f"ssl_{name}")
        }
        return Connection(
            host=host[0],
            port=host[1],
            user=opts["user"],
            password=opts["pass"] or "",
            database=opts["db"],
            ssl=ssl or None,
            charset="utf8mb4",
            # UTC: query() shows alter_time as SQLite's CURRENT_TIMESTAMP does.
            # Strict: a value too long for its column fails instead of being
            # cut silently, whatever the server's default sql_mode.
            init_command="SET time_zone = '+00:00', sql_mode = CONCAT_WS(',',"
            " NULLIF(@@sql_mode, ''), 'STRICT_TRANS_TABLES')",
            # A dead server must not hold a reactor thread for long.
            connect_timeout=3,
            read_timeout=60,
            write_timeout=60,
            autocommit=False,
        )

    def max_row_bytes(self):
        # A statement bigger than max_allowed_packet makes the server drop the
        # connection, which looks like an outage: never send one.
        packet = getattr(self, "_packet", None)
        if packet is None:
            packet = self._packet = int(self.select("SELECT @@max_allowed_packet", ())[0][0])
        return packet - 65536

    def _insert_new(self, cur, statement, params):
        if len(params) > 1:
            try:
                cur.executemany(statement, params)
                return cur.rowcount
            except Exception as exc:  # pylint: disable=broad-except
                if not is_duplicate_key(exc):
                    raise
                # Some are stored already: start over, one row at a time.
                cur.connection.rollback()
        added = 0
        for row in params:
            try:
                cur.execute(statement, row)
                added += 1
            except Exception as exc:  # pylint: disable=broad-except
                if not is_duplicate_key(exc):
                    raise
        return added

    def is_row_error(self, exc):
        if isinstance(exc, RowTooBig) or pymysql_error(exc, "DataError", "IntegrityError"):
            return True
        return bool(exc.args) and exc.args[0] in MYSQL_ROW_ERRNOS

    def describe(self):
        opts = self.config.mysql
        hosts = ",".join(host_name(host) for host in self.hosts())
        return f"mysql://{opts['user']}@{hosts}/{opts['db']}"

    def server_version(self):
        return self.select("SELECT VERSION()", ())[0][0]

    def schema(self):
        tables = dict(self.select(MYSQL_TABLES_INFO, ALL_TABLES))
        unique = {}
        for table, index, column in self.select(MYSQL_UNIQUE_KEYS, RETURNER_TABLES):
            unique.setdefault(table, {}).setdefault(index, []).append(column)
        columns = {}
        for table, *column in self.select(MYSQL_TEXT_COLUMNS, (*RETURNER_TABLES, EVENTS_TABLE)):
            columns.setdefault(table, []).append(
                TextColumn(*column[:4], nullable=column[4] == "YES")
            )
        return Schema(
            tables,
            {table: {tuple(key) for key in keys.values()} for table, keys in unique.items()},
            columns,
            {EVENTS_TABLE: index_columns(self.select(MYSQL_INDEXES, (EVENTS_TABLE,)))},
        )
