"""
eventstore.query's filters and views beyond the basics: time windows, failed
returns, the whole return data, and the minions that did not return.
"""

from runnerlib import JID, new_event, ret_event

OLD, MID, NEW = "20261124080000000000", "20261125080000000000", "20261126080000000000"


def test_query_since_and_until_select_returns_by_job_start_time(es):
    for jid in (OLD, MID, NEW):
        es.store(*ret_event(jid=jid))
    listed = es.query(since="2026-11-25", until=NEW)
    assert [r["jid"] for r in listed] == [MID]


def test_query_failed_lists_failed_returns_only(es):
    es.store(*ret_event(minion="ok"))
    es.store(*ret_event(minion="bad", success=False))
    assert [r["minion"] for r in es.query(failed=True)] == ["bad"]


def test_query_failed_with_a_jid_gives_the_jobs_failed_minions(es):
    es.store(*ret_event(minion="ok", ret="fine"))
    es.store(*ret_event(minion="bad", ret="broken", success=False))
    assert es.query(jid=JID, failed=True) == {"bad": "broken"}


def test_query_with_a_jid_applies_the_minion_filter(es):
    es.store(*ret_event(minion="web1", ret=1))
    es.store(*ret_event(minion="db1", ret=2))
    assert es.query(jid=JID, minion="web*") == {"web1": 1}


def test_query_refuses_failed_together_with_success(es):
    refused = es.query(failed=True, success=True)
    assert "exclude each other" in refused["Error"]
    assert refused["retcode"] == es.__context__["retcode"] == 1


def test_query_full_with_a_jid_gives_the_whole_return_data(es):
    tag, data = ret_event(fun="cmd.run", ret="up", fun_args=["uptime"])
    es.store(tag, data)
    assert es.query(jid=JID, full=True) == {"web1": data}


def test_query_full_lists_full_ret_instead_of_return(es):
    tag, data = ret_event(ret="up")
    es.store(tag, data)
    (row,) = es.query(full=True)
    assert "return" not in row and row["full_ret"] == data


def test_query_full_of_a_state_run_does_not_ask_for_the_highstate_outputter(es):
    es.store(*ret_event(fun="state.apply", ret={"x": {"result": True}}, out="highstate"))
    assert es.query(jid=JID, full=True)["web1"]["out"] == "highstate"


def test_query_missing_adds_targeted_minions_that_did_not_return(es):
    es.store(*new_event(minions=["web1", "web2", "web3"]))
    es.store(*ret_event(minion="web1", ret="here"))
    assert es.query(jid=JID, missing=True) == {
        "web1": "here",
        "web2": "Minion did not return",
        "web3": "Minion did not return",
    }


def test_query_missing_counts_a_return_as_returned_whatever_the_filters(es):
    es.store(*new_event(minions=["web1", "web2"]))
    es.store(*ret_event(minion="web1", ret="here"))
    assert es.query(jid=JID, missing=True, failed=True) == {"web2": "Minion did not return"}


def test_query_missing_without_a_stored_load_gives_the_returns(es):
    es.store(*ret_event(minion="web1", ret="here"))
    assert es.query(jid=JID, missing=True) == {"web1": "here"}


def test_query_missing_needs_a_jid(es):
    assert "missing=True needs a jid" in es.query(missing=True)["Error"]
