"""
The schema decisions, without a database: what differs from eventstore's
layout, what migrate does about it, and which copy of a duplicate it keeps.
"""

import datetime
from saltext.eventstore import schema


def a_schema(collation="utf8mb4_bin", returns_key=True):
    columns = [schema.TextColumn("load", "mediumtext", "mediumtext", collation, False)]
    return schema.Schema(
        tables={"jids": collation, "salt_returns": collation},
        unique_keys={"jids": {("jid",)}, "salt_returns": {("jid", "id")} if returns_key else set()},
        text_columns={"jids": columns},
    )


def copy(marker, alter_time):
    return schema.StoredReturn("test.ping", "1", marker, "web1", "1", marker, alter_time)


def test_eventstores_own_layout_has_no_differences():
    assert schema.schema_differences(a_schema()) == []


def test_a_missing_unique_key_on_jid_and_id_is_a_difference():
    assert schema.schema_differences(a_schema(returns_key=False)) == [
        "salt_returns has no unique key on (jid, id): a return stored twice is two rows"
    ]


def test_utf8mb4_compared_case_insensitively_is_a_difference():
    assert schema.schema_differences(a_schema(collation="utf8mb4_general_ci"))[0] == (
        "jids is utf8mb4_general_ci, not utf8mb4_bin:"
        " minion ids differing only in case are mixed up"
    )


def test_the_conversion_keeps_mediumtext_columns_mediumtext():
    statement = schema.convert_statement("jids", a_schema().text_columns["jids"])
    assert statement == (
        "ALTER TABLE `jids` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,"
        " MODIFY `load` mediumtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"
    )


def test_migration_converts_before_it_adds_the_unique_key():
    plan = schema.migration_plan(a_schema(collation="utf8mb3_general_ci", returns_key=False))
    assert [statement.split(" CONVERT")[0].split(" ADD")[0] for statement in plan] == [
        "ALTER TABLE `jids`",
        "ALTER TABLE `salt_returns`",
        "ALTER TABLE `salt_returns`",
    ]
    assert plan[-1] == schema.ADD_UNIQUE_KEY


def test_the_first_stored_copy_is_kept():
    early, late = datetime.datetime(2026, 1, 1, 10), datetime.datetime(2026, 1, 1, 11)
    assert schema.first_return([copy("late", late), copy("early", early)]).ret == "early"


def test_a_copy_without_a_time_counts_as_the_newest():
    known = copy("known", datetime.datetime(2026, 1, 1))
    assert schema.first_return([copy("unknown", None), known]).ret == "known"
