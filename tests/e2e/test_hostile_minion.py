"""
What a minion can put on the master's bus that is not a genuine return, and a
return bigger than the bus carries: against the real master, minion and MariaDB.
"""

import json

import pytest
from saltlib import run_job


def forge(client, minion, tag, data):
    """
    Have a real minion put an event with any tag on the master bus
    (event.fire_master with a preload carrying an events list).
    """
    ret = client.cmd(
        minion.id,
        "event.fire_master",
        kwarg={"data": {}, "tag": "eventstore/test", "preload": {"events": [{"tag": tag, "data": data}]}},
        timeout=60,
    )
    assert ret == {minion.id: True}, ret


def rows_of(db, jid):
    with db.cursor() as cur:
        cur.execute("SELECT id, `return` FROM salt_returns WHERE jid = %s ORDER BY id", (jid,))
        return [(minion_id, json.loads(ret)) for minion_id, ret in cur.fetchall()]


def forged_return(jid, minion_id, ret="forged"):
    tag = f"salt/job/{jid}/ret/{minion_id}"
    data = {"id": minion_id, "jid": jid, "fun": "test.ping", "fun_args": [], "return": ret,
            "retcode": 0, "success": True, "cmd": "_return"}
    return tag, data


def test_3_mb_return_trimmed_on_the_bus_is_stored_whole(client, minion, db, reactions):
    jid, ret = run_job(client, minion, "cmd.run", ["printf '%03000000d' 0"])
    assert ret == "VALUE_TRIMMED"  # what every listener on the bus gets
    assert reactions.result(f"salt/job/{jid}/ret/{minion.id}") == "stored"
    assert rows_of(db, jid) == [(minion.id, "0" * 3_000_000)]


def test_forged_return_for_another_minion_is_refused(client, minion, db, reactions):
    jid, _ = run_job(client, minion, "test.ping")
    tag, data = forged_return(jid, "es-victim")
    forge(client, minion, tag, data)
    assert reactions.result(tag) == "refused"
    assert [m for m, _ in rows_of(db, jid)] == [minion.id]


def test_forged_return_for_a_job_never_published_is_refused(client, minion, db, reactions):
    tag, data = forged_return("20991231235959000001", minion.id)
    forge(client, minion, tag, data)
    assert reactions.result(tag) == "refused"
    assert rows_of(db, "20991231235959000001") == []


def test_forged_copy_of_its_own_return_stores_the_genuine_one(client, minion, db, reactions):
    jid, _ = run_job(client, minion, "test.echo", ["genuine"])
    reactions.result(f"salt/job/{jid}/ret/{minion.id}")
    tag, data = forged_return(jid, minion.id, ret="tampered")
    data["fun"] = "test.echo"
    forge(client, minion, tag, data)
    assert reactions.result(tag, count=2) == "duplicate"
    assert rows_of(db, jid) == [(minion.id, "genuine")]


def test_a_flood_of_forged_returns_does_not_hold_up_genuine_ones(client, minion, db, reactions):
    jid, _ = run_job(client, minion, "test.ping")
    # 100 forgeries for minions the job did not target, in one event: each
    # waited the full job_cache_wait (5 s) once, 50 s for ten reactor threads.
    forgeries = [forged_return(jid, f"es-victim-{n}") for n in range(100)]
    client.cmd(
        minion.id,
        "event.fire_master",
        kwarg={"data": {}, "tag": "eventstore/test",
               "preload": {"events": [{"tag": tag, "data": data} for tag, data in forgeries]}},
        timeout=60,
    )
    genuine, _ = run_job(client, minion, "test.echo", ["after the flood"])
    assert reactions.result(f"salt/job/{genuine}/ret/{minion.id}", timeout=20) == "stored"
    assert reactions.result(forgeries[-1][0]) == "refused"
    assert [m for m, _ in rows_of(db, jid)] == [minion.id]


@pytest.mark.parametrize(
    "tag, data, case",
    [
        ("salt/job/../../etc/passwd/ret/x", {"id": "x", "return": 1, "fun": "test.ping"}, "traversal"),
        (
            "salt/job/20991231235959000002/ret/x'); DROP TABLE salt_returns; --",
            {"id": "x'); DROP TABLE salt_returns; --", "return": 1, "fun": "test.ping"},
            "sql",
        ),
        ("salt/job/20991231235959000003/ret/x", {"id": "y", "return": 1, "fun": "test.ping"}, "id"),
        ("salt/job/20991231235959000004/ret/x", {"id": "x", "fun": "test.ping"}, "no return"),
        ("salt/job/20991231235959000005/ret/x", {"return": 1, "fun": "test.ping"}, "no id"),
        (
            "salt/job/20991231235959000006/ret/x",
            {"id": "x", "jid": "20991231235959000007", "return": 1, "fun": "test.ping"},
            "jid",
        ),
        ("salt/job/20991231235959000008/ret/x\x00y", {"id": "x\x00y", "return": 1, "fun": "test.ping"}, "NUL"),
    ],
)
def test_hostile_events_are_refused_and_the_reactor_carries_on(
    master, client, minion, db, reactions, tag, data, case
):
    forge(client, minion, tag, data)
    assert reactions.result(tag) == "refused", case
    with open(master.config["log_file"], encoding="utf-8", errors="replace") as log:
        refusals = [line for line in log if f"not storing {tag}: " in line]
    assert len(refusals) == 1, refusals  # once, with the reason after the colon
    jid, _ = run_job(client, minion, "test.ping")
    assert reactions.result(f"salt/job/{jid}/ret/{minion.id}") == "stored"
    with db.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM salt_returns WHERE id LIKE 'x%%'")
        assert cur.fetchone()[0] == 0
