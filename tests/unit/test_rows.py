"""
What each event becomes: the rows the mysql returner would write, or a refusal.
"""

import json

import pytest
from runnerlib import JID, new_event, ret_event
from saltext.eventstore import readback, rows


def row_for(tag, data, ignore=None):
    kind, jid, minion = rows.parse_tag(tag)
    assert kind == "ret"
    return rows.return_row(jid, minion, data, ignore or rows.ALWAYS_IGNORED)


def test_parse_tag_reads_a_return_tag():
    assert rows.parse_tag(f"salt/job/{JID}/ret/web1") == ("ret", JID, "web1")


def test_parse_tag_reads_a_new_job_tag():
    assert rows.parse_tag(f"salt/job/{JID}/new") == ("new", JID, None)


@pytest.mark.parametrize(
    "tag",
    ["salt/auth", "salt/run/123/new", f"salt/job/{JID}/prog/web1/0", "salt/job", None, 42],
)
def test_parse_tag_ignores_other_tags(tag):
    assert rows.parse_tag(tag) is None


def test_return_row_has_the_returner_columns():
    tag, data = ret_event(ret={"a": 1})
    row = row_for(tag, data)
    assert (row.fun, row.jid, row.id, row.success) == ("test.ping", JID, "web1", "1")
    assert json.loads(row.ret) == {"a": 1}


def test_full_ret_is_the_whole_event_data():
    tag, data = ret_event()
    assert json.loads(row_for(tag, data).full_ret) == data


def test_failed_return_has_success_zero():
    tag, data = ret_event(success=False)
    assert row_for(tag, data).success == "0"


def test_return_without_success_key_has_success_zero():
    tag, data = ret_event()
    del data["success"]
    assert row_for(tag, data).success == "0"


def test_non_ascii_is_stored_as_text_not_escapes():
    tag, data = ret_event(ret="grüße, 東京")
    assert row_for(tag, data).ret == '"grüße, 東京"'


def test_four_byte_characters_are_kept():
    tag, data = ret_event(ret="deploy \U0001f680 done")
    assert json.loads(row_for(tag, data).ret) == "deploy \U0001f680 done"


def test_lone_surrogate_is_escaped_rather_than_lost():
    tag, data = ret_event(ret="bad \udc80 byte")
    row = row_for(tag, data)
    row.ret.encode("utf-8")  # storable
    assert json.loads(row.ret) == "bad \udc80 byte"


def test_bytes_in_a_return_are_stored_as_text():
    tag, data = ret_event(ret={"out": b"caf\xc3\xa9"})
    assert json.loads(row_for(tag, data).ret) == {"out": "café"}


def test_find_job_is_not_stored():
    tag, data = ret_event(fun="saltutil.find_job", ret={})
    assert row_for(tag, data) is None


def test_functions_matching_an_ignore_glob_are_not_stored():
    tag, data = ret_event(fun="test.ping")
    assert row_for(tag, data, ignore=("saltutil.find_job", "test.*")) is None


def test_functions_not_matching_an_ignore_glob_are_stored():
    tag, data = ret_event(fun="cmd.run")
    assert row_for(tag, data, ignore=("saltutil.find_job", "test.*")) is not None


def test_long_function_name_is_cut_to_the_column_and_kept_whole_in_full_ret():
    fun = "custom_module_with_a_long_name." + "f" * 40
    tag, data = ret_event(fun=fun)
    row = row_for(tag, data)
    assert row.fun == fun[:50]
    assert json.loads(row.full_ret)["fun"] == fun


def test_return_nested_under_data_is_unwrapped():
    tag, inner = ret_event(ret="nested")
    row = row_for(tag, {"data": inner, "schedule": "nightly"})
    assert json.loads(row.ret) == "nested"


def test_minion_id_disagreeing_with_the_tag_is_refused():
    tag, data = ret_event(minion="web1")
    data["id"] = "db1"
    with pytest.raises(rows.Refused, match="disagrees with the tag"):
        row_for(tag, data)


def test_jid_disagreeing_with_the_tag_is_refused():
    tag, data = ret_event()
    data["jid"] = "20991231235959000000"
    with pytest.raises(rows.Refused, match="disagrees with the tag"):
        row_for(tag, data)


@pytest.mark.parametrize("jid", ["../../etc/passwd", JID + "_" + "x" * 235])
def test_tag_jid_that_is_not_a_job_id_is_refused(jid):
    _, data = ret_event(jid=jid)
    with pytest.raises(rows.Refused, match="not a job id"):
        rows.return_row(jid, "web1", data)


def test_return_without_return_key_is_refused():
    tag, data = ret_event()
    del data["return"]
    with pytest.raises(rows.Refused, match="no return"):
        row_for(tag, data)


def test_return_without_function_is_refused():
    tag, data = ret_event()
    del data["fun"]
    with pytest.raises(rows.Refused, match="no function"):
        row_for(tag, data)


def test_event_data_that_is_not_a_mapping_is_refused():
    with pytest.raises(rows.Refused, match="not a mapping"):
        rows.return_row(JID, "web1", ["not", "a", "dict"])


def test_unique_jid_suffix_is_a_job_id():
    jid = JID + "_12345"
    tag, data = ret_event(jid=jid)
    assert row_for(tag, data).jid == jid


def test_load_row_is_the_new_job_event_as_json():
    tag, data = new_event(fun="cmd.run", arg=["uptime"])
    kind, jid, _ = rows.parse_tag(tag)
    row = rows.load_row(jid, data)
    assert row.jid == JID
    assert json.loads(row.load) == data


def test_load_row_refuses_a_disagreeing_jid():
    _, data = new_event()
    data["jid"] = "20991231235959000000"
    with pytest.raises(rows.Refused):
        rows.load_row(JID, data)


def test_job_load_from_the_job_cache_names_its_minions_as_the_events_do():
    load = {"jid": JID, "fun": "test.ping", "tgt": "*", "Minions": ["web2", "web1"]}
    assert json.loads(rows.job_load(JID, load).load)["minions"] == ["web1", "web2"]


def test_job_load_of_a_scheduled_job_leaves_its_return_to_salt_returns():
    _, data = ret_event(ret="big output")
    data["schedule"] = "hourly"
    load = json.loads(rows.job_load(JID, data).load)
    assert load["schedule"] == "hourly" and "return" not in load and "success" not in load


@pytest.mark.parametrize(
    "glob, like",
    [("web*", "web%"), ("db?", "db_"), ("state.apply", "state.apply"), ("50%_off!", "50!%!_off!!")],
)
def test_glob_to_like_translates_wildcards_and_escapes_sql_ones(glob, like):
    assert readback.glob_to_like(glob) == like
