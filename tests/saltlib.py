"""
Helpers for the end-to-end tier (real salt-master, salt-minion and reactor):
master configs, the reactor's verdicts and running a job.  A module of its own,
not the e2e conftest: ``from conftest import`` picks whichever conftest.py is
first on sys.path, so it broke when tiers were collected in one pytest run.
"""

import time

from runnerlib import REACTOR_SLS, REPO, mysql_keys

#: Execution modules of the tests' own (eventstore_e2e: hostile returns).
MODULE_DIR = REPO / "tests" / "e2e" / "files" / "_modules"

#: The README's reactor config: returns, and runner and wheel jobs' results;
#: each job's load comes with its first.
REACTOR = [
    {"salt/job/*/ret/*": [str(REACTOR_SLS)]},
    {"salt/run/*/ret": [str(REACTOR_SLS)]},
    {"salt/wheel/*/ret": [str(REACTOR_SLS)]},
]

#: The e2e masters' file_roots: orchestrations of the tests' own (files/orch/).
FILES_DIR = REPO / "tests" / "e2e" / "files"


def reactor_master_config(database_keys):
    """
    Master config with this reactor and runner, storing where ``database_keys``
    (a returner's master config keys) say.
    """
    return {
        "reactor": REACTOR,
        # Loaded straight from the checkout; test_install.py covers sync_runners.
        "runner_dirs": [str(REPO / "_runners")],
        **database_keys,
    }


def mysql_master_config(mysql_server, database, user=None, password=None):
    """
    Master config with this reactor and runner, storing into ``database`` (as
    the server's user unless told otherwise).
    """
    return reactor_master_config(mysql_keys(mysql_server, database, user, password))


def engine_master_config(mysql_server, database, reactor=False, **engine):
    """
    Master config running the eventstore engine with ``engine`` settings (and
    the reactor too, with ``reactor``), storing into ``database``.
    """
    return with_engine(mysql_master_config(mysql_server, database), reactor, **engine)


def with_engine(config, reactor=False, **engine):
    """
    ``config`` (a reactor master's) running the eventstore engine with
    ``engine`` settings, and the reactor too with ``reactor``.
    """
    config = dict(config)
    if not reactor:
        del config["reactor"]
    config.update(engines_dirs=[str(REPO / "_engines")], engines=[{"eventstore": engine}])
    return config


class Reactions:
    """
    What the reactor did with each event: it fires the runner's result on the
    bus as salt/run/<jid>/ret, with the event's tag among the runner's arguments.
    """

    def __init__(self, event_listener, master):
        self.event_listener = event_listener
        self.master = master
        self.since = time.time()

    def result(self, tag, timeout=60, count=1):
        """
        The runner's verdict on the event tagged ``tag`` (with ``count``: the
        verdict on the count-th event of that tag).
        """
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = sorted(
                (
                    event
                    for event in self.event_listener.get_events(
                        [(self.master.id, "salt/run/*/ret")], after_time=self.since
                    )
                    if event.data.get("fun") == "runner.eventstore.store"
                    and (event.data.get("fun_args") or [{}])[-1].get("tag") == tag
                ),
                key=lambda event: event.stamp,
            )
            if len(found) >= count:
                return found[count - 1].data["return"]
            time.sleep(0.2)
        raise AssertionError(f"the reactor did not store {tag} within {timeout} s")


def run_job(client, minion, fun, arg=(), kwarg=None, timeout=60):
    """
    Publish a job, wait for the minion's return; give back its jid and return.
    """
    jid = None
    for ret in client.cmd_iter(
        minion.id, fun, arg=list(arg), kwarg=kwarg, timeout=timeout, full_return=True
    ):
        for minion_id, data in ret.items():
            if minion_id == minion.id:
                return data["jid"], data["ret"]
    raise AssertionError(f"{fun} on {minion.id} returned nothing (jid {jid})")


def run_job_retried(client, minion, fun, arg=(), attempts=3, timeout=30):
    """
    ``run_job``, published again when the minion did not answer: after a
    master restart it may be re-authenticating (its master_alive check).
    """
    for attempt in range(1, attempts + 1):
        try:
            return run_job(client, minion, fun, arg, timeout=timeout)
        except AssertionError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")
