"""
What a minion can put on the master's bus that is not a genuine return, and a
return bigger than the bus carries: against the real master, minion and MariaDB.
"""

import json
import os

import pytest
import salt.client
from saltlib import Reactions, run_job


def forge(client, minion, tag, data):
    """
    Have a real minion put an event with any tag on the master bus
    (event.fire_master with a preload carrying an events list).
    """
    ret = client.cmd(
        minion.id,
        "event.fire_master",
        kwarg={
            "data": {},
            "tag": "eventstore/test",
            "preload": {"events": [{"tag": tag, "data": data}]},
        },
        timeout=60,
    )
    assert ret == {minion.id: True}, ret


def rows_of(db, jid):
    with db.cursor() as cur:
        cur.execute("SELECT id, `return` FROM salt_returns WHERE jid = %s ORDER BY id", (jid,))
        return [(minion_id, json.loads(ret)) for minion_id, ret in cur.fetchall()]


def forged_return(jid, minion_id, ret="forged"):
    tag = f"salt/job/{jid}/ret/{minion_id}"
    data = {
        "id": minion_id,
        "jid": jid,
        "fun": "test.ping",
        "fun_args": [],
        "return": ret,
        "retcode": 0,
        "success": True,
        "cmd": "_return",
    }
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
    # 100 forgeries for minions the job did not target, in one event: were
    # each waited for the full job_cache_wait (an hour on this master), the
    # reactor's ten threads would hold up the genuine return for hours, not
    # the 2 s of UNEXPECTED_WAIT each.
    forgeries = [forged_return(jid, f"es-victim-{n}") for n in range(100)]
    client.cmd(
        minion.id,
        "event.fire_master",
        kwarg={
            "data": {},
            "tag": "eventstore/test",
            "preload": {"events": [{"tag": tag, "data": data} for tag, data in forgeries]},
        },
        timeout=60,
    )
    genuine, _ = run_job(client, minion, "test.echo", ["after the flood"])
    assert reactions.result(f"salt/job/{genuine}/ret/{minion.id}", timeout=300) == "stored"
    assert reactions.result(forgeries[-1][0]) == "refused"
    assert [m for m, _ in rows_of(db, jid)] == [minion.id]


@pytest.fixture(scope="module")
def published(master, minion, event_listener):
    """The jid of a genuine job of the minion, stored: hostile events below name it."""
    reactions = Reactions(event_listener, master)
    with salt.client.get_local_client(master.config_file) as client:
        jid, _ = run_job(client, minion, "test.ping")
    assert reactions.result(f"salt/job/{jid}/ret/{minion.id}") == "stored"
    return jid


# Each an event of the genuine job but for one defect, refused by its own check
# (the reason logged), not as a forgery for want of a published job.
@pytest.mark.parametrize(
    "tag, data, reason",
    [
        ("salt/job/../../etc/passwd/ret/x", {"id": "x", "return": 1}, "is not a job id"),
        (
            "salt/job/{jid}/ret/x'); DROP TABLE salt_returns; --",
            {"id": "x'); DROP TABLE salt_returns; --", "return": 1},
            "the master job cache has no such return",  # a valid id, never targeted
        ),
        (
            "salt/job/{jid}/ret/{minion}",
            {"id": "y", "return": 1},
            "data.id 'y' disagrees with the tag",
        ),
        ("salt/job/{jid}/ret/{minion}", {"id": "{minion}"}, "the event has no return"),
        ("salt/job/{jid}/ret/{minion}", {"return": 1}, "data.id 'None' disagrees with the tag"),
        (
            "salt/job/{jid}/ret/{minion}",
            {"id": "{minion}", "jid": "20991231235959000007", "return": 1},
            "data.jid '20991231235959000007' disagrees with the tag",
        ),
        ("salt/job/{jid}/ret/x\x00y", {"id": "x\x00y", "return": 1}, "is not a minion id"),
    ],
    ids=["traversal", "sql", "id", "no return", "no id", "jid", "NUL"],
)
def test_hostile_events_are_refused_and_the_reactor_carries_on(
    master, client, minion, db, reactions, published, tag, data, reason
):
    tag = tag.format(jid=published, minion=minion.id)
    data = {
        key: value.format(minion=minion.id) if isinstance(value, str) else value
        for key, value in data.items()
    }
    data["fun"] = "test.ping"
    log_file = master.config["log_file"]
    logged_before = os.path.getsize(log_file)  # other cases refused events of this tag
    forge(client, minion, tag, data)
    assert reactions.result(tag) == "refused"
    with open(log_file, encoding="utf-8", errors="replace") as log:
        log.seek(logged_before)
        refusals = [line for line in log if f"not storing {tag}: " in line]
    assert len(refusals) == 1, refusals  # once, with its reason after the colon
    assert reason in refusals[0]
    jid, _ = run_job(client, minion, "test.ping")
    assert reactions.result(f"salt/job/{jid}/ret/{minion.id}") == "stored"
    assert [m for m, _ in rows_of(db, published)] == [minion.id]
    with db.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM salt_returns WHERE id LIKE 'x%%'")
        assert cur.fetchone()[0] == 0
