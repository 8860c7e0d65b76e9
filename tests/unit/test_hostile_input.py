"""
Malformed and hostile events: none crashes the runner, none is stored wrong,
each refusal is logged once with its reason.
"""

import json
import logging

import pytest
from runnerlib import JID, ret_event


def stored(es):
    return es._store().select("SELECT `id`, `return`, `full_ret` FROM salt_returns", ())


def refused_once(es, caplog, tag, data, reason):
    with caplog.at_level(logging.WARNING):
        assert es.store(tag, data) == "refused"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and reason in warnings[0], warnings


@pytest.fixture(autouse=True)
def tables(es):
    es.init()


@pytest.mark.parametrize(
    "missing, reason", [("id", "disagrees with the tag"), ("return", "no return")]
)
def test_event_without_a_required_key_is_refused(es, caplog, missing, reason):
    tag, data = ret_event()
    del data[missing]
    refused_once(es, caplog, tag, data, reason)
    assert stored(es) == []


def test_a_return_without_data_jid_is_stored_under_the_tags_jid(es):
    tag, data = ret_event()
    del data["jid"]
    assert es.store(tag, data) == "stored"
    assert es._store().select("SELECT jid FROM salt_returns", ()) == [(JID,)]


def test_tag_minion_disagreeing_with_data_id_is_refused(es, caplog):
    tag, data = ret_event(minion="web1")
    data["id"] = "web2"
    refused_once(es, caplog, tag, data, "disagrees with the tag")
    assert stored(es) == []


def test_path_traversal_jid_is_refused(es, caplog):
    _, data = ret_event()
    data["jid"] = "../../etc/passwd"
    refused_once(es, caplog, "salt/job/../../etc/passwd/ret/web1", data, "not a job id")


@pytest.mark.parametrize("minion", ["web\x001", "web/../1", "web\n1", "."])
def test_minion_id_salt_would_not_accept_is_refused(es, caplog, minion):
    tag, data = ret_event(minion=minion)
    refused_once(es, caplog, tag, data, "is not a minion id")


def test_four_byte_characters_in_a_minion_id_are_kept(es):
    assert es.store(*ret_event(minion="web-\U0001f680")) == "stored"
    assert list(es.query(jid=JID)) == ["web-\U0001f680"]


def test_nan_and_infinity_are_stored_as_valid_json_strings(es):
    es.store(*ret_event(ret={"load": float("nan"), "max": float("inf"), "min": float("-inf")}))
    ((_, ret, full_ret),) = stored(es)
    assert json.loads(ret, parse_constant=pytest.fail) == {
        "load": "NaN",
        "max": "Infinity",
        "min": "-Infinity",
    }
    json.loads(full_ret, parse_constant=pytest.fail)


def test_data_nested_too_deeply_is_refused_without_crashing(es, caplog):
    deep = []
    for _ in range(100_000):
        deep = [deep]
    tag, data = ret_event(ret=deep)
    refused_once(es, caplog, tag, data, "nested too deeply")


def test_store_still_works_after_hostile_events(es):
    es.store("salt/job/not-a-jid/ret/x", {"id": "x"})
    es.store(*ret_event(minion="web/1"))
    es.store(f"salt/job/{JID}/ret/web1", "not a mapping")
    assert es.store(*ret_event(minion="good")) == "stored"


def test_query_limit_counts_returns_of_the_long_function_name_only(es):
    fun = "a_custom_execution_module_with_a_long_name.and_a_long_function"
    other = "a_custom_execution_module_with_a_long_name.and_another_function"
    es.store(*ret_event(jid="20261126120000000001", fun=fun, ret="older, wanted"))
    es.store(*ret_event(jid="20261126120000000002", fun=other, ret="newer, other"))
    assert [r["return"] for r in es.query(fun=fun, limit=1)] == ["older, wanted"]


def test_a_cut_function_name_does_not_match_another_glob(es):
    fun = "a_custom_execution_module_with_a_long_name.and_a_long_function"
    es.store(*ret_event(fun=fun))
    assert es.query(fun="*.other_function") == []


def test_compound_job_function_list_is_stored_joined(es):
    es.store(*ret_event(fun=["test.ping", "test.version"], ret={"test.ping": True}))
    assert [r["fun"] for r in es.query()] == ["test.ping,test.version"]
