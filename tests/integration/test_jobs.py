"""
eventstore.jobs: stored jobs as jobs.list_jobs shows them, with their return
counts, filtered, newest first and paged, on both backends.
"""

from runnerlib import new_event, ret_event

OLD, MID, NEW = "20261124080000000000", "20261125080000000000", "20261126080000000000"


def job(es, jid, fun="test.ping", minions=("web1",), failed=(), **load):
    es.store(*new_event(jid=jid, fun=fun, minions=minions, **load))
    for minion in minions:
        es.store(*ret_event(minion=minion, jid=jid, fun=fun, success=minion not in failed))


def jids(listing):
    return [entry["JID"] for entry in listing["jobs"]]


def test_jobs_lists_newest_first_in_the_format_of_list_jobs(es):
    job(es, OLD)
    job(es, NEW, fun="cmd.run", arg=["uptime"], tgt="web*", user="alice")
    listing = es.jobs()
    assert jids(listing) == [NEW, OLD]
    assert listing["jobs"][0] == {
        "JID": NEW,
        "Function": "cmd.run",
        "Arguments": ["uptime"],
        "Target": "web*",
        "Target-type": "glob",
        "User": "alice",
        "StartTime": "2026, Nov 26 08:00:00.000000",
        "Returned": 1,
        "Failed": 0,
    }


def test_jobs_counts_returned_and_failed_minions(es):
    job(es, NEW, minions=("web1", "web2", "web3"), failed=("web2",))
    assert {k: es.jobs()["jobs"][0][k] for k in ("Returned", "Failed")} == {
        "Returned": 3,
        "Failed": 1,
    }


def test_jobs_counts_nothing_for_a_job_no_minion_returned_from(es):
    es.store(*new_event(jid=NEW))
    assert (es.jobs()["jobs"][0]["Returned"], es.jobs()["jobs"][0]["Failed"]) == (0, 0)


def test_jobs_filters_by_function_glob(es):
    job(es, OLD, fun="state.apply")
    job(es, NEW, fun="test.ping")
    assert jids(es.jobs(fun="state.*")) == [OLD]


def test_jobs_filters_by_several_functions(es):
    job(es, OLD, fun="state.apply")
    job(es, MID, fun="cmd.run")
    job(es, NEW, fun="test.ping")
    assert jids(es.jobs(fun="state.*,test.ping")) == [NEW, OLD]


def test_jobs_filters_by_target_glob(es):
    job(es, OLD, tgt="db*")
    job(es, NEW, tgt="web*")
    assert jids(es.jobs(target="web*")) == [NEW]


def test_jobs_matches_a_list_target_by_its_minions(es):
    job(es, OLD, tgt=["db1", "web2"], tgt_type="list")
    job(es, NEW, tgt=["db1", "db2"], tgt_type="list")
    assert jids(es.jobs(target="web2")) == [OLD]


def test_jobs_filters_by_user(es):
    job(es, OLD, user="alice")
    job(es, NEW, user="bob")
    assert jids(es.jobs(user="alice")) == [OLD]


def test_jobs_since_is_inclusive_and_until_exclusive(es):
    for jid in (OLD, MID, NEW):
        job(es, jid)
    assert jids(es.jobs(since="2026-11-25 08:00", until="2026-11-26 08:00")) == [MID]


def test_jobs_since_takes_a_jid(es):
    for jid in (OLD, MID, NEW):
        job(es, jid)
    assert jids(es.jobs(since=int(MID))) == [NEW, MID]


def test_jobs_failed_lists_jobs_with_a_failed_return_only(es):
    job(es, OLD, minions=("web1", "web2"), failed=("web2",))
    job(es, NEW, minions=("web1", "web2"))
    assert jids(es.jobs(failed=True)) == [OLD]


def test_jobs_pages_by_limit_and_prints_the_cursor_of_the_next_page(es):
    for jid in (OLD, MID, NEW):
        job(es, jid)
    first = es.jobs(limit=2)
    assert (jids(first), first["next"]) == ([NEW, MID], MID)
    second = es.jobs(limit=2, before=first["next"])
    assert (jids(second), second["next"]) == ([OLD], None)


def test_jobs_last_full_page_has_no_next_cursor(es):
    job(es, OLD)
    job(es, NEW)
    assert es.jobs(limit=2)["next"] is None


def test_jobs_pages_through_filters_that_skip_many_jobs(es):
    # More non-matching jobs than one scan chunk (200) lie between the matches.
    job(es, "20261101000000000000", fun="state.apply")
    for n in range(250):
        es.store(*new_event(jid=f"202611020000{n:08d}", fun="test.ping"))
    job(es, "20261103000000000000", fun="state.apply")
    first = es.jobs(fun="state.apply", limit=1)
    assert (jids(first), first["next"]) == (["20261103000000000000"], "20261103000000000000")
    assert jids(es.jobs(fun="state.apply", limit=1, before=first["next"])) == [
        "20261101000000000000"
    ]


def test_jobs_hides_find_job_polls(es):
    es.store(*new_event(jid=OLD, fun="saltutil.find_job"))
    job(es, NEW)
    assert jids(es.jobs()) == [NEW]


def test_jobs_refuses_a_time_it_cannot_read_with_a_nonzero_exit(es):
    refused = es.jobs(since="yesterday")
    assert refused["Error"].startswith("Invalid input: since: 'yesterday' is not a time")
    assert refused["retcode"] == es.__context__["retcode"] == 1


def test_jobs_refuses_a_limit_below_one(es):
    assert "limit must be a whole number above 0" in es.jobs(limit=0)["Error"]
