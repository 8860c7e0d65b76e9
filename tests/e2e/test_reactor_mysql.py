"""
Real jobs on a real minion, stored by the reactor into a real MariaDB.
"""

import inspect
import json

import pytest
import salt.loader
import salt.utils.user
import salt.version
from saltlib import run_job

STATE_SLS = """
eventstore-demo-file:
  file.managed:
    - name: {path}
    - contents: stored by eventstore
eventstore-demo-check:
  test.succeed_with_changes: []
"""


def returned_row(db, jid, minion_id):
    with db.cursor() as cur:
        cur.execute(
            "SELECT fun, `return`, success, full_ret FROM salt_returns WHERE jid = %s AND id = %s",
            (jid, minion_id),
        )
        rows = cur.fetchall()
    assert len(rows) == 1, rows
    fun, ret, success, full_ret = rows[0]
    return {
        "fun": fun,
        "return": json.loads(ret),
        "success": success,
        "full_ret": json.loads(full_ret),
    }


def stored_return(db, reactions, minion, jid):
    assert reactions.result(f"salt/job/{jid}/ret/{minion.id}") == "stored"
    return returned_row(db, jid, minion.id)


def test_ping_is_stored_as_a_successful_return(client, minion, db, reactions):
    jid, _ = run_job(client, minion, "test.ping")
    row = stored_return(db, reactions, minion, jid)
    assert (row["fun"], row["return"], row["success"]) == ("test.ping", True, "1")


def test_job_load_is_stored_with_its_return_with_target_and_user(client, minion, db, reactions):
    jid, _ = run_job(client, minion, "test.ping")
    assert reactions.result(f"salt/job/{jid}/ret/{minion.id}") == "stored"
    with db.cursor() as cur:
        cur.execute("SELECT `load` FROM jids WHERE jid = %s", (jid,))
        load = json.loads(cur.fetchone()[0])
    # The client of this test publishes as the user running it.
    publisher = salt.utils.user.get_specific_user()
    stored = (load["jid"], load["fun"], load["arg"], load["tgt"], load["tgt_type"], load["user"])
    assert stored == (jid, "test.ping", [], minion.id, "glob", publisher)


def test_non_ascii_command_output_is_stored_verbatim(client, minion, db, reactions):
    jid, ret = run_job(client, minion, "cmd.run", ["printf 'grüße 東京 \U0001f680'"])
    assert ret == "grüße 東京 \U0001f680"
    assert stored_return(db, reactions, minion, jid)["return"] == "grüße 東京 \U0001f680"


def test_failing_command_is_stored_with_success_zero(client, minion, db, reactions):
    jid, _ = run_job(client, minion, "cmd.run", ["echo failing; exit 3"])
    row = stored_return(db, reactions, minion, jid)
    assert row["success"] == "0"
    assert row["full_ret"]["retcode"] == 3


def test_keyword_arguments_are_kept_in_full_ret(client, minion, db, reactions):
    jid, _ = run_job(client, minion, "test.arg", ["one"], kwarg={"colour": "blue"})
    row = stored_return(db, reactions, minion, jid)
    assert row["full_ret"]["fun_args"] == ["one", {"colour": "blue", "__kwarg__": True}]
    assert row["return"]["kwargs"]["colour"] == "blue"


def test_state_run_is_stored_and_prints_with_the_highstate_outputter(
    master, client, minion, db, reactions, tmp_path
):
    sls = STATE_SLS.format(path=tmp_path / "demo.txt")
    with master.state_tree.base.temp_file("eventstore_demo.sls", sls):
        jid, _ = run_job(client, minion, "state.apply", ["eventstore_demo"])
    row = stored_return(db, reactions, minion, jid)
    assert row["full_ret"]["out"] == "highstate"
    assert all(state["result"] for state in row["return"].values())
    printed = master.salt_run_cli().run("eventstore.query", f"jid={jid}", "--out=highstate")
    assert "Succeeded: 2" in printed.stdout


def test_300_kb_return_is_stored_whole(client, minion, db, reactions):
    jid, ret = run_job(client, minion, "cmd.run", ["printf '%0300000d' 0"])
    assert len(ret) == 300000
    assert stored_return(db, reactions, minion, jid)["return"] == ret


def test_salt_run_query_prints_the_jobs_returns(master, client, minion, reactions):
    jid, _ = run_job(client, minion, "test.echo", ["hello"])
    reactions.result(f"salt/job/{jid}/ret/{minion.id}")
    ret = master.salt_run_cli().run("eventstore.query", f"jid={jid}")
    assert ret.returncode == 0
    assert ret.data == {minion.id: "hello"}


def test_salt_run_query_lists_the_latest_returns(master, client, minion, reactions):
    jid, _ = run_job(client, minion, "test.echo", ["latest"])
    reactions.result(f"salt/job/{jid}/ret/{minion.id}")
    ret = master.salt_run_cli().run("eventstore.query", "fun=test.echo", "limit=1")
    assert [(r["jid"], r["minion"], r["return"]) for r in ret.data] == [(jid, minion.id, "latest")]


def test_salt_run_jobs_lists_the_job_with_its_return_count(master, client, minion, reactions):
    jid, _ = run_job(client, minion, "test.echo", ["listed"])
    reactions.result(f"salt/job/{jid}/ret/{minion.id}")
    ret = master.salt_run_cli().run("eventstore.jobs", "fun=test.echo", "since=1h", "limit=1")
    assert ret.returncode == 0
    (listed,) = ret.data["jobs"]
    assert (listed["JID"], listed["Arguments"], listed["Returned"]) == (jid, ["listed"], 1)


#: Where the mysql returner lives: Salt core up to 3007, saltext-mysql from 3008 on.
MYSQL_RETURNER_FILE = (
    "saltext/mysql/returners/mysql.py"
    if salt.version.__saltstack_version__.major >= 3008
    else "salt/returners/mysql.py"
)


@pytest.fixture
def mysql_returner(master):
    """The official mysql returner this Salt has, configured like our runner."""
    return salt.loader.returners(master.config.copy(), {})


def test_official_returner_is_salts_own_before_3008_and_saltext_mysqls_after(mysql_returner):
    source = inspect.getfile(mysql_returner["mysql.get_jid"].func)
    assert source.endswith(MYSQL_RETURNER_FILE)


def test_official_returner_reads_our_rows(master, client, minion, reactions, mysql_returner):
    jid, _ = run_job(client, minion, "test.echo", ["read me"])
    reactions.result(f"salt/job/{jid}/ret/{minion.id}")
    assert mysql_returner["mysql.get_jid"](jid)[minion.id]["return"] == "read me"
    assert mysql_returner["mysql.get_load"](jid)["fun"] == "test.echo"
    assert mysql_returner["mysql.get_fun"]("test.echo")[minion.id]["jid"] == jid
    assert jid in mysql_returner["mysql.get_jids"]()
    assert minion.id in mysql_returner["mysql.get_minions"]()
