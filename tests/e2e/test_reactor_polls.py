"""
What the reactor spends on returns eventstore does not store: nothing.  The
reactor SLS decides ``saltutil.find_job`` polls and ``eventstore: ignore_funs``
itself, before any runner job, on a real master whose client polls a long job.
"""

import time

import pytest
import salt.client
import salt.utils.yaml
from saltlib import Reactions, mysql_master_config, run_job, run_job_retried

#: Seconds between find_job polls of a running job (Salt's default: 10).
POLL_EVERY = 2


@pytest.fixture(scope="module")
def poll_master(salt_factories, mysql_server, module_database):
    overrides = mysql_master_config(mysql_server, module_database)
    overrides.update(
        gather_job_timeout=POLL_EVERY,
        eventstore={"ignore_funs": ["test.version"]},
    )
    factory = salt_factories.salt_master_daemon("es-poll-master", overrides=overrides)
    with factory.started():
        assert factory.salt_run_cli().run("eventstore.init").returncode == 0
        yield factory


@pytest.fixture(scope="module")
def poll_minion(poll_master):
    factory = poll_master.salt_minion_daemon("es-poll-minion")
    with factory.started():
        yield factory


@pytest.fixture
def poll_client(poll_master):
    with salt.client.get_local_client(poll_master.config_file) as local:
        yield local


class RunnerJobs:
    """
    The eventstore runner jobs the reactor starts, and the job events it
    reacts to, as the master fires them.
    """

    def __init__(self, event_listener, master):
        self.event_listener = event_listener
        self.master = master
        self.reactions = Reactions(event_listener, master)
        self.since = time.time()

    def _events(self, pattern):
        return [
            event.data
            for event in self.event_listener.get_events(
                [(self.master.id, pattern)], after_time=self.since
            )
        ]

    def started(self):
        """The runner jobs started so far, by the tag they were given."""
        return [
            (data.get("fun_args") or [{}])[-1].get("tag")
            for data in self._events("salt/run/*/new")
            if data.get("fun") == "runner.eventstore.store"
        ]

    def polls(self):
        return [
            data
            for data in self._events("salt/job/*/new")
            if data.get("fun") == "saltutil.find_job"
        ]

    def settle(self, client, minion):
        """
        Wait until every reaction to the events so far has started: the
        reactor starts runner jobs in the order of their events, so once a
        stored return fired after them has its verdict, they have started.
        """
        jid, _ = run_job(client, minion, "test.echo", ["settle"])
        assert self.reactions.result(f"salt/job/{jid}/ret/{minion.id}") == "stored"
        return f"salt/job/{jid}/ret/{minion.id}"


def stored_returns(mysql_server, database, jid=None, fun=None):
    with mysql_server.connect(database) as conn, conn.cursor() as cur:
        column, value = ("jid", jid) if fun is None else ("fun", fun)
        cur.execute(f"SELECT COUNT(*) FROM salt_returns WHERE `{column}` = %s", (value,))
        return cur.fetchone()[0]


def test_a_job_outliving_the_clients_timeout_starts_one_runner_job_for_its_return(
    poll_master, poll_minion, poll_client, event_listener, mysql_server, module_database
):
    runner_jobs = RunnerJobs(event_listener, poll_master)
    # Client timeout 1 s, a 7 s job: Salt polls the minion with find_job at 1 s, then every 2 s.
    jid, _ = run_job(poll_client, poll_minion, "cmd.run", ["sleep 7; echo done"], timeout=1)
    settled = runner_jobs.settle(poll_client, poll_minion)
    assert len(runner_jobs.polls()) >= 2, "the client did not poll the running job"
    assert sorted(runner_jobs.started()) == sorted(
        [f"salt/job/{jid}/ret/{poll_minion.id}", settled]
    )
    assert stored_returns(mysql_server, module_database, fun="saltutil.find_job") == 0


def test_a_function_in_ignore_funs_starts_no_runner_job_and_stores_nothing(
    poll_master, poll_minion, poll_client, event_listener, mysql_server, module_database
):
    runner_jobs = RunnerJobs(event_listener, poll_master)
    jid, _ = run_job(poll_client, poll_minion, "test.version")
    settled = runner_jobs.settle(poll_client, poll_minion)
    assert runner_jobs.started() == [settled]
    assert stored_returns(mysql_server, module_database, jid) == 0


def restart_with(master, **eventstore):
    """Stop the master, change its ``eventstore`` config, start it again."""
    master.terminate()
    config = salt.utils.yaml.safe_load(open(master.config_file, encoding="utf-8"))
    config["eventstore"] = eventstore
    with open(master.config_file, "w", encoding="utf-8") as handle:
        salt.utils.yaml.safe_dump(config, handle, default_flow_style=False)
    master.start()


def test_a_changed_ignore_funs_takes_effect_in_the_sls_and_the_runner_after_a_restart(
    poll_master, poll_minion, event_listener, mysql_server, module_database
):
    restart_with(poll_master, ignore_funs=["test.versions_information"])
    try:
        with salt.client.get_local_client(poll_master.config_file) as client:
            run_job_retried(client, poll_minion, "test.ping", attempts=12, timeout=10)
            RunnerJobs(event_listener, poll_master).settle(client, poll_minion)
            runner_jobs = RunnerJobs(event_listener, poll_master)
            now_ignored, _ = run_job(client, poll_minion, "test.versions_information")
            now_stored, _ = run_job(client, poll_minion, "test.version")
            settled = runner_jobs.settle(client, poll_minion)
            assert sorted(runner_jobs.started()) == sorted(
                [f"salt/job/{now_stored}/ret/{poll_minion.id}", settled]
            )
        assert stored_returns(mysql_server, module_database, now_ignored) == 0
        assert stored_returns(mysql_server, module_database, now_stored) == 1
        # The runner's own filter (the engine's and a hand call's) changed with it.
        by_hand = poll_master.salt_run_cli().run(
            "eventstore.store",
            f"tag=salt/job/{now_ignored}/ret/{poll_minion.id}",
            f'data={{"id": "{poll_minion.id}", "jid": "{now_ignored}",'
            ' "fun": "test.versions_information", "return": {}}',
        )
        assert by_hand.stdout.strip() == "ignored"
    finally:
        restart_with(poll_master, ignore_funs=["test.version"])
