"""
Genuine returns that are hard to store (issue 3, points 4 and 5), made by the
real minion's eventstore_e2e module (files/_modules): the runner stores only
what the master job cache holds, so hostile content must come from a real job.
"""

import json
import math
from collections import namedtuple

import pytest
import salt.client
import salt.exceptions
from saltlib import Reactions, run_job

LONG_FUN = "eventstore_e2e.a_function_whose_name_is_longer_than_the_fun_column"
OTHER_LONG_FUN = "eventstore_e2e.another_function_whose_name_is_longer_than_the_fun_column"

#: More than a mediumtext column holds (16 MiB - 1), less than the minion's max_event_size.
OVERSIZE = 17_000_000


def ret_tag(jid, minion):
    return f"salt/job/{jid}/ret/{minion.id}"


def stored_row(db, jid, minion):
    with db.cursor() as cur:
        cur.execute(
            "SELECT fun, `return`, full_ret FROM salt_returns WHERE jid = %s AND id = %s",
            (jid, minion.id),
        )
        return cur.fetchall()


def stored_return(db, reactions, minion, jid):
    assert reactions.result(ret_tag(jid, minion)) == "stored"
    ((_, ret, _),) = stored_row(db, jid, minion)
    return json.loads(ret)


def assert_reactor_carries_on(client, minion, reactions):
    jid, _ = run_job(client, minion, "test.ping")
    assert reactions.result(ret_tag(jid, minion)) == "stored"


def strict_json(text):
    """``text`` read as JSON that has no NaN nor Infinity."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in stored JSON"))


def test_salt_run_query_finds_a_function_name_longer_than_its_column(
    master, client, minion, reactions
):
    jid, _ = run_job(client, minion, LONG_FUN)
    reactions.result(ret_tag(jid, minion))
    # A newer return whose name is cut too: query's limit must not count it.
    newer, _ = run_job(client, minion, OTHER_LONG_FUN)
    reactions.result(ret_tag(newer, minion))
    listed = master.salt_run_cli().run("eventstore.query", f"fun={LONG_FUN}", "limit=1")
    assert [(r["jid"], r["fun"], r["return"]) for r in listed.data] == [
        (jid, LONG_FUN, "long name")
    ]
    by_jid = master.salt_run_cli().run("eventstore.query", f"jid={jid}", f"fun={LONG_FUN}")
    assert by_jid.data == {minion.id: "long name"}


def dead_letter_counts(master):
    counts = master.salt_run_cli().run("eventstore.status").data["dead_letters"]
    return {"on disk": counts["on disk"], "in the table": counts.get("in the table", 0)}


Oversize = namedtuple("Oversize", "jid bus_return verdict counts_before")


@pytest.fixture(scope="module")
def oversize(master, minion, event_listener):
    """One job returning more than mediumtext holds, as the tests below see it."""
    before = dead_letter_counts(master)
    reactions = Reactions(event_listener, master)
    with salt.client.get_local_client(master.config_file) as client:
        jid, ret = run_job(client, minion, "eventstore_e2e.big", [OVERSIZE], timeout=120)
    return Oversize(jid, ret, reactions.result(ret_tag(jid, minion), timeout=120), before)


def test_return_bigger_than_mediumtext_is_dead_lettered_not_dropped(oversize, minion, db):
    assert oversize.bus_return == "VALUE_TRIMMED"  # read whole from the job cache
    assert oversize.verdict == "dead-lettered"
    assert stored_row(db, oversize.jid, minion) == ()


def test_salt_run_query_shows_the_dead_letter_with_its_reason(oversize, master, minion):
    ret = master.salt_run_cli().run("eventstore.query", f"jid={oversize.jid}")
    reason = f"ret is {OVERSIZE + 2} bytes, more than a mediumtext column holds"  # + 2 quotes
    assert ret.data == {minion.id: f"Not stored: {reason} (see eventstore.status)"}


def test_salt_run_status_counts_the_dead_letter_where_it_is_kept(oversize, master, db):
    with db.cursor() as cur:
        cur.execute("SELECT @@max_allowed_packet")
        (packet,) = cur.fetchone()
    # A server whose max_allowed_packet is smaller than the letter (MariaDB's
    # default 16 MiB) refuses it even in the dead-letter table: kept on disk.
    where = "in the table" if packet > OVERSIZE + 100_000 else "on disk"
    after = dead_letter_counts(master)
    assert after[where] == oversize.counts_before[where] + 1, (packet, after)


def test_reactor_stores_the_next_return_after_a_dead_letter(oversize, client, minion, reactions):
    assert_reactor_carries_on(client, minion, reactions)


def test_nan_and_infinities_are_stored_as_strings_in_valid_json(client, minion, db, reactions):
    jid, ret = run_job(client, minion, "eventstore_e2e.nan")
    assert math.isnan(ret["nan"]) and ret["inf"] == math.inf  # what the master got
    assert reactions.result(ret_tag(jid, minion)) == "stored"
    ((_, stored, full_ret),) = stored_row(db, jid, minion)
    assert strict_json(stored) == {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
    assert strict_json(full_ret)["return"] == strict_json(stored)


def test_nul_and_4_byte_characters_are_stored_as_the_master_got_them(client, minion, db, reactions):
    jid, ret = run_job(client, minion, "eventstore_e2e.text")
    assert ret == {"nul": "a\x00b", "emoji": "\U0001f600"}
    assert stored_return(db, reactions, minion, jid) == ret
    ((_, stored, _),) = stored_row(db, jid, minion)
    assert "\U0001f600" in stored  # as the character itself: the column is utf8mb4


def test_invalid_utf8_command_output_is_stored_as_salt_delivers_it(client, minion, db, reactions):
    jid, ret = run_job(client, minion, "cmd.run", [r"printf '\377\376ab'"])
    assert ret == "\ufffd\ufffdab"  # the minion decodes with replacement characters
    assert stored_return(db, reactions, minion, jid) == ret


def test_return_nested_400_deep_is_stored_whole(client, minion, db, reactions):
    jid, ret = run_job(client, minion, "eventstore_e2e.nested", [400])
    assert stored_return(db, reactions, minion, jid) == ret
    assert json.dumps(ret).count("[") == 400


def missed_by_the_reactor_then_backfilled(master, client, minion, db, reactions, jid):
    """
    Check that the reactor carried on without storing the job's return and
    that backfill stores it; give back the stored ``return`` column.
    """
    assert_reactor_carries_on(client, minion, reactions)
    with pytest.raises(AssertionError, match="did not store"):
        reactions.result(ret_tag(jid, minion), timeout=2)
    backfilled = master.salt_run_cli().run("eventstore.backfill", f"jid={jid}")
    assert backfilled.data["returns added"] == 1, backfilled
    ((_, stored, _),) = stored_row(db, jid, minion)
    return stored


def test_return_too_deep_for_the_reactor_does_not_stall_it_and_backfill_stores_it(
    master, client, minion, db, reactions
):
    jid, ret = run_job(client, minion, "eventstore_e2e.nested", [500])
    # Salt's reactor deep-copies the rendered reaction: RecursionError, logged,
    # and the runner is never called (not ours to fix; the engine has no such step).
    stored = missed_by_the_reactor_then_backfilled(master, client, minion, db, reactions, jid)
    assert json.loads(stored) == ret


def test_bytes_return_is_stored_as_json_escapes_that_decode_back(
    client, minion, db, reactions, tmp_path
):
    path = tmp_path / "not-utf8"
    path.write_bytes(b"\xff\xfe ab")
    jid, ret = run_job(client, minion, "file.read", [str(path)], kwarg={"binary": True})
    assert ret == b"\xff\xfe ab"  # msgpack bin: bytes on the master too
    # The reactor SLS hands the event over as decoded (no |json, which refused bytes).
    assert reactions.result(ret_tag(jid, minion)) == "stored"
    ((_, stored, _),) = stored_row(db, jid, minion)
    # Bytes are kept as text with surrogate escapes, written as JSON \u escapes.
    assert json.loads(stored).encode("utf-8", "surrogateescape") == ret
    assert stored.isascii()


def test_lone_surrogate_return_never_leaves_the_minion(master, client, minion, db, reactions):
    # The minion cannot msgpack it ('surrogates not allowed'): its job process
    # dies and the master gets no return, so there is nothing to store.
    jid = client.run_job(minion.id, "eventstore_e2e.lone_surrogate")["jid"]
    assert_reactor_carries_on(client, minion, reactions)
    assert master.salt_run_cli().run("jobs.lookup_jid", jid).data == {}
    assert stored_row(db, jid, minion) == ()


def test_lone_surrogate_argument_is_refused_by_the_salt_client(client, minion):
    with pytest.raises(salt.exceptions.SaltClientError, match="surrogates not allowed"):
        client.cmd(minion.id, "test.echo", ["lone \udc80"], timeout=5)
