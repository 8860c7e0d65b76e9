"""
Long operations say how far they are through a real master: ``salt-run``
prints each runner progress event as it comes, before the summary, and a
short run prints only its summary, as before.
"""

import json

import pytest

OLD_RETURNS = 3000
CUTOFF = "2021-01-01"


@pytest.fixture
def old_returns(db):
    """Returns stored in 2020, of jobs of 2020: what a prune before 2021 deletes."""
    rows = [
        (f"2020010100{n:010d}", "old-minion", '{"id": "old-minion", "return": true}')
        for n in range(OLD_RETURNS)
    ]
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO salt_returns (fun, jid, `return`, id, success, full_ret, alter_time)"
            " VALUES ('test.ping', %s, 'true', %s, '1', %s, '2020-06-01 00:00:00')",
            rows,
        )
    db.commit()
    yield
    with db.cursor() as cur:
        cur.execute("DELETE FROM salt_returns WHERE id = 'old-minion'")
    db.commit()


def printed(ret):
    """The JSON documents salt-run printed, one after the other."""
    decoder, text, documents = json.JSONDecoder(), ret.stdout.strip(), []
    while text:
        document, end = decoder.raw_decode(text)
        documents.append(document)
        text = text[end:].lstrip()
    return documents


def test_salt_run_prune_prints_progress_as_it_goes_then_its_summary(master, old_returns):
    # A row a transaction: 3,000 of them take well over the quarter second between reports.
    ret = master.salt_run_cli().run(
        "eventstore.prune", f"before={CUTOFF}", "batch_size=1", "progress=0.25", "--out=json"
    )
    assert ret.returncode == 0, ret
    *reports, summary = printed(ret)
    assert reports and all(report["suffix"] == "progress" for report in reports)
    messages = [report["event"]["message"] for report in reports]
    assert all(message.startswith("prune salt_returns: ") for message in messages), messages
    assert "left" in messages[0] and "rows/s" in messages[0]
    assert summary == {
        "cutoff": "2021-01-01T00:00:00+00:00",
        "action": "deleted",
        "jids": 0,
        "salt_returns": OLD_RETURNS,
        "salt_events": 0,
    }


def test_salt_run_prune_with_progress_off_prints_only_its_summary(master, old_returns):
    ret = master.salt_run_cli().run(
        "eventstore.prune", f"before={CUTOFF}", "batch_size=2", "progress=False", "--out=json"
    )
    assert ret.returncode == 0, ret
    assert printed(ret) == [
        {
            "cutoff": "2021-01-01T00:00:00+00:00",
            "action": "deleted",
            "jids": 0,
            "salt_returns": OLD_RETURNS,
            "salt_events": 0,
        }
    ]
