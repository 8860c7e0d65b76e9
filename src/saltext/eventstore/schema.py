"""
The layout eventstore makes and the ones it meets: the DDL of each database
(written once, in MySQL's words, and translated for SQLite and PostgreSQL),
what a database's tables lack against it (:py:func:`schema_differences`),
and the statements that upgrade a database made from the mysql returner's
documented schema (:py:func:`migration_plan`, the duplicate removal).  Pure:
text and rules; :py:mod:`saltext.eventstore.migration` runs them.
"""

import datetime
import os
import re
from collections import namedtuple

RETURNER_TABLES = ("jids", "salt_returns")
#: What storing needs: the returner's tables and eventstore's own.
REQUIRED_TABLES = (*RETURNER_TABLES, "eventstore_dead_letters")
#: event_return's table: needed once ``eventstore: events`` names any.
EVENTS_TABLE = "salt_events"
#: Every table ``init`` makes, as the catalogs are asked about them.
ALL_TABLES = (*REQUIRED_TABLES, EVENTS_TABLE)
#: The index read-back and prune go along on salt_events (not in event_return's layout).
EVENT_TIME_KEY = ("alter_time",)
#: The unique key each table needs: one job load per jid, one return per (jid, minion).
UNIQUE_KEYS = {"jids": ("jid",), "salt_returns": ("jid", "id")}
#: MySQL: 4-byte UTF-8, and minion ids compared as they are spelt (web1 is not Web1).
COLLATION = "utf8mb4_bin"

#: What a database holds: ``tables`` {name: collation or None},
#: ``unique_keys`` {table: set of column tuples}, ``text_columns`` {table:
#: [TextColumn]} (MySQL only: SQLite text is always UTF-8, compared as bytes).
#: ``indexes`` {table: set of column tuples}: salt_events' keys, unique or not.
Schema = namedtuple("Schema", "tables unique_keys text_columns indexes", defaults=({},))
TextColumn = namedtuple("TextColumn", "name data_type column_type collation nullable")
StoredReturn = namedtuple("StoredReturn", "fun jid ret id success full_ret alter_time")


def missing_tables(schema, tables=REQUIRED_TABLES):
    return [table for table in tables if table not in schema.tables]


def required_tables(event_globs):
    """
    The tables storing needs: ``salt_events`` too when events are stored.
    """
    return ALL_TABLES if event_globs else REQUIRED_TABLES


def collations_of(schema, table):
    """
    The collations of ``table`` and its text columns (none on SQLite).
    """
    found = {schema.tables[table]}
    found.update(column.collation for column in schema.text_columns.get(table, ()))
    found.discard(None)
    return found


def schema_differences(schema):
    """
    How the tables present differ from the layout ``init`` makes, one
    sentence each; an empty list when they match.  A database made from the
    mysql returner's documented schema is utf8 (3-byte) with no unique key on
    ``(jid, id)``.
    """
    found = []
    for table in RETURNER_TABLES:
        if table not in schema.tables:
            continue
        key = UNIQUE_KEYS[table]
        if key not in schema.unique_keys.get(table, set()):
            found.append(
                f"{table} has no unique key on ({', '.join(key)}): "
                + (
                    "a return stored twice is two rows"
                    if table == "salt_returns"
                    else "a job load stored twice is two rows"
                )
            )
        collations = collations_of(schema, table)
        if collations - {COLLATION}:
            found.append(
                f"{table} is {', '.join(sorted(collations))}, not {COLLATION}:"
                " 4-byte characters (emoji) cannot be stored"
                if any(not c.startswith("utf8mb4") for c in collations)
                else f"{table} is {', '.join(sorted(collations))}, not {COLLATION}:"
                " minion ids differing only in case are mixed up"
            )
    if EVENTS_TABLE in schema.tables:
        if collations_of(schema, EVENTS_TABLE) - {COLLATION}:
            found.append(
                f"{EVENTS_TABLE} is {', '.join(sorted(collations_of(schema, EVENTS_TABLE)))},"
                f" not {COLLATION}: 4-byte characters (emoji) cannot be stored"
            )
        if EVENT_TIME_KEY not in schema.indexes.get(EVENTS_TABLE, set()):
            found.append(
                f"{EVENTS_TABLE} has no index on (alter_time): reading events by time"
                " and prune scan the table"
            )
    return found


def convert_statement(table, text_columns):
    """
    The ALTER that converts ``table`` to utf8mb4_bin.  CONVERT TO alone would
    widen each mediumtext to longtext to keep its length in characters; the
    MODIFY clauses keep the returner's column types (the data fits: utf8 text
    takes the same bytes in utf8mb4).
    """
    clauses = [f"ALTER TABLE `{table}` CONVERT TO CHARACTER SET utf8mb4 COLLATE {COLLATION}"]
    for column in text_columns:
        if column.data_type.endswith("text"):
            clauses.append(
                f"MODIFY `{column.name}` {column.column_type} CHARACTER SET utf8mb4"
                f" COLLATE {COLLATION} {'NULL' if column.nullable else 'NOT NULL'}"
            )
    return ", ".join(clauses)


def first_return(rows):
    """
    Of several stored copies of one (jid, minion) return
    (:py:class:`StoredReturn` rows), the one a migration keeps: the first
    stored (oldest ``alter_time``; a missing time counts as newest), then the
    lowest ``full_ret``, then the lowest of the other columns, so the choice
    never depends on the order in which the server reads the rows.
    """
    return min(
        rows,
        key=lambda row: (
            row.alter_time is None,
            row.alter_time or datetime.datetime.min,
            row.full_ret,
            row.ret,
            row.fun,
            row.success,
        ),
    )


def migration_plan(schema):
    """
    The statements ``migrate`` runs, in order: first the conversions to
    utf8mb4_bin (so that duplicates are then found as minion ids are spelt:
    ``Web1`` and ``web1`` are two minions, which the returner's
    utf8_general_ci would call one), then the unique key on ``salt_returns
    (jid, id)``, before which ``migrate`` removes the duplicate returns.
    """
    plan = [
        convert_statement(table, schema.text_columns.get(table, ()))
        for table in (*RETURNER_TABLES, EVENTS_TABLE)
        if table in schema.tables and collations_of(schema, table) - {COLLATION}
    ]
    if UNIQUE_KEYS["salt_returns"] not in schema.unique_keys.get("salt_returns", set()):
        plan.append(ADD_UNIQUE_KEY)
    if EVENTS_TABLE in schema.tables and EVENT_TIME_KEY not in schema.indexes.get(
        EVENTS_TABLE, set()
    ):
        plan.append(ADD_EVENT_TIME_KEY)
    return plan


# ---------------------------------------------------------------------------
# The DDL: written once, in MySQL's quoting; SQLite's and PostgreSQL's are
# translated from it.
# ---------------------------------------------------------------------------

MYSQL_TABLES = (
    """CREATE TABLE IF NOT EXISTS `jids` (
  `jid` varchar(255) NOT NULL,
  `load` mediumtext NOT NULL,
  UNIQUE KEY `jid` (`jid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    """CREATE TABLE IF NOT EXISTS `salt_returns` (
  `fun` varchar(50) NOT NULL,
  `jid` varchar(255) NOT NULL,
  `return` mediumtext NOT NULL,
  `id` varchar(255) NOT NULL,
  `success` varchar(10) NOT NULL,
  `full_ret` mediumtext NOT NULL,
  `alter_time` TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  KEY `id` (`id`),
  KEY `jid` (`jid`),
  KEY `fun` (`fun`),
  UNIQUE KEY `jid_id` (`jid`, `id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    """CREATE TABLE IF NOT EXISTS `eventstore_dead_letters` (
  `jid` varchar(255) NOT NULL,
  `id` varchar(255) NOT NULL,
  `fun` varchar(50) NOT NULL,
  `reason` varchar(1000) NOT NULL,
  `data` longtext NOT NULL,
  `alter_time` TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  UNIQUE KEY `jid_id` (`jid`, `id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    # event_return's table, plus an index on alter_time for reading by time and prune.
    """CREATE TABLE IF NOT EXISTS `salt_events` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `tag` varchar(255) NOT NULL,
  `data` mediumtext NOT NULL,
  `alter_time` TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  `master_id` varchar(255) NOT NULL,
  PRIMARY KEY (`id`),
  KEY `tag` (`tag`),
  KEY `alter_time` (`alter_time`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
)


def sqlite_tables(mysql_tables):
    """
    SQLite's DDL, translated from the MySQL DDL so the layout is written once:
    no table options, ``UNIQUE KEY name (cols)`` as ``UNIQUE (cols)``, each
    plain ``KEY`` as a ``CREATE INDEX`` (but the ones a unique key starts with),
    and an ``AUTO_INCREMENT`` primary key as ``INTEGER PRIMARY KEY AUTOINCREMENT``.
    """
    statements = []
    for statement in mysql_tables:
        head, body = statement.split(" (\n", 1)
        table = re.search(r"`(\w+)`$", head).group(1)
        parts = [part.strip() for part in body[: body.rindex("\n)")].split(",\n")]
        unique = [re.fullmatch(r"UNIQUE KEY `\w+` \((.+)\)", part) for part in parts]
        unique_starts = {match.group(1).split(",")[0] for match in unique if match}
        columns, indexes = [], []
        for part in parts:
            key = re.fullmatch(r"(UNIQUE )?KEY `(\w+)` \((.+)\)", part)
            if part.startswith("PRIMARY KEY"):
                continue  # the AUTO_INCREMENT column says it
            if part.endswith(" BIGINT NOT NULL AUTO_INCREMENT"):
                columns.append(part.split(" ")[0] + " INTEGER PRIMARY KEY AUTOINCREMENT")
            elif not key:
                columns.append(part)
            elif key.group(1):
                columns.append(f"UNIQUE ({key.group(3)})")
            elif key.group(3) not in unique_starts:
                indexes.append(
                    f"CREATE INDEX IF NOT EXISTS `{table}_{key.group(2)}` ON `{table}` ({key.group(3)})"
                )
        statements.append(head + " (\n  " + ",\n  ".join(columns) + "\n)")
        statements.extend(indexes)
    return tuple(statements)


SQLITE_TABLES = sqlite_tables(MYSQL_TABLES)

#: The pgjsonb returner's name for the GIN index of ``jids.load``; the others
#: are ``idx_<table>_<column>`` there as here.
PGJSONB_INDEX_NAMES = {("jids", "load"): "idx_jids_jsonb"}


def postgres_tables(sqlite_tables):
    """
    PostgreSQL's DDL in the pgjsonb returner's layout, translated from
    SQLite's (itself from the MySQL DDL, so the layout is written once):
    the JSON columns (``mediumtext``) are ``jsonb`` with a GIN index each,
    as pgjsonb makes them; ``alter_time`` is ``timestamptz``; keys and ids
    compare byte by byte (``COLLATE "C"``, as ``utf8mb4_bin`` on MySQL), and
    the dead letters' ``longtext`` is ``text``.
    """
    statements = []
    for statement in sqlite_tables:
        statement = (
            statement.replace("`", '"')
            .replace(
                "TIMESTAMP DEFAULT CURRENT_TIMESTAMP", "TIMESTAMP WITH TIME ZONE DEFAULT NOW()"
            )
            .replace("longtext", "text")
            .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
        )
        statement = re.sub(r"(varchar\(\d+\))", r'\1 COLLATE "C"', statement)
        # pgjsonb's index names: idx_salt_returns_id, not salt_returns_id.
        statement = re.sub(
            r'INDEX IF NOT EXISTS "(\w+)" ON', r'INDEX IF NOT EXISTS "idx_\1" ON', statement
        )
        statements.append(statement.replace("mediumtext", "jsonb"))
        table = re.match(r'CREATE TABLE IF NOT EXISTS "(\w+)"', statement)
        for column in re.findall(r'"(\w+)" mediumtext', statement):
            index = PGJSONB_INDEX_NAMES.get(
                (table.group(1), column), f"idx_{table.group(1)}_{column}"
            )
            statements.append(
                f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table.group(1)}" USING gin ("{column}")'
                " WITH (fastupdate = on)"
            )
    return tuple(statements)


POSTGRES_TABLES = postgres_tables(SQLITE_TABLES)

#: Each database's DDL, as ``init`` runs it and ``sql/<dialect>.sql`` shows it.
DDL = {"mysql": MYSQL_TABLES, "sqlite": SQLITE_TABLES, "postgres": POSTGRES_TABLES}


def schema_sql(dialect):
    """
    The DDL of ``sql/<dialect>.sql``, from the same statements the runner's ``init`` runs.
    """
    returner = "pgjsonb" if dialect == "postgres" else "mysql"
    head = (
        f"-- eventstore schema for {dialect}: the {returner} returner's jids, salt_returns and\n"
        "-- salt_events, plus one row per (jid, minion).  Generated by `make sql` from"
        " src/saltext/eventstore/schema.py.\n"
    )
    return head + "\n".join(statement + ";\n" for statement in DDL[dialect])


def write_schema_files(folder):
    for dialect in DDL:
        with open(os.path.join(folder, f"{dialect}.sql"), "w", encoding="utf-8") as handle:
            handle.write(schema_sql(dialect))


# ---------------------------------------------------------------------------
# Migrating a database made from the mysql returner's documented schema.
# ---------------------------------------------------------------------------

ADD_UNIQUE_KEY = "ALTER TABLE `salt_returns` ADD UNIQUE KEY `jid_id` (`jid`, `id`)"
ADD_EVENT_TIME_KEY = "ALTER TABLE `salt_events` ADD KEY `alter_time` (`alter_time`)"
# Duplicates are the same (jid, id) byte for byte, whatever the collation of the day.
DUPLICATE_GROUPS = (
    "FROM `salt_returns` GROUP BY CAST(`jid` AS BINARY), CAST(`id` AS BINARY) HAVING COUNT(*) > 1"
)
COUNT_DUPLICATES = (
    "SELECT COUNT(*), COALESCE(SUM(`copies`), 0) FROM"
    " (SELECT COUNT(*) AS `copies` " + DUPLICATE_GROUPS + ") AS `duplicated`"
)
# The (jid, id) pairs stored more than once, numbered, in a temporary table
# of this connection: then the copies go a batch of pairs per transaction.
DROP_DUPLICATES_TABLE = "DROP TEMPORARY TABLE IF EXISTS `eventstore_duplicates`"
CREATE_DUPLICATES_TABLE = (
    "CREATE TEMPORARY TABLE `eventstore_duplicates` ("
    "`n` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " `jid` varchar(255) NOT NULL, `id` varchar(255) NOT NULL"
    ") DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
)
FIND_DUPLICATES = (
    "INSERT INTO `eventstore_duplicates` (`jid`, `id`) SELECT MIN(`jid`), MIN(`id`) "
    + DUPLICATE_GROUPS
)
DUPLICATES_JOIN = (
    " FROM `eventstore_duplicates` AS `d` JOIN `salt_returns` AS `r`"
    " ON `r`.`jid` = `d`.`jid` AND `r`.`id` = `d`.`id` WHERE `d`.`n` > %s AND `d`.`n` <= %s"
)
SELECT_DUPLICATES = (
    "SELECT `r`.`fun`, `r`.`jid`, `r`.`return`, `r`.`id`, `r`.`success`, `r`.`full_ret`,"
    " `r`.`alter_time`" + DUPLICATES_JOIN + " FOR UPDATE"
)
DELETE_DUPLICATES = "DELETE `r`" + DUPLICATES_JOIN
REINSERT_RETURN = (
    "INSERT INTO `salt_returns` (`fun`, `jid`, `return`, `id`, `success`, `full_ret`,"
    " `alter_time`) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
