"""
Realistic job events for the benchmark, and the master job cache behind them.

A burst is a list of jobs, each of 100 minions: test.ping, cmd.run_all (about
1 kB of output) and state.apply (about 50 kB, 100 states) in turn.  Each job
is one ``salt/job/<jid>/new`` event and one ``salt/job/<jid>/ret/<minion>``
event per minion, with the data a master fires.  Before a burst is fired, its
loads and returns are written into the master's job cache with Salt's own
local_cache returner, as the master writes them, so that eventstore's
verification finds them.
"""

import itertools
import time

import salt.loader
import salt.utils.event

MINIONS_PER_JOB = 100
KINDS = ("test.ping", "cmd.run_all", "state.apply")

_jid_counter = itertools.count()


def new_jid():
    # Unique across the whole run, and a valid jid (20 digits, then a suffix).
    return time.strftime("%Y%m%d%H%M%S") + f"{next(_jid_counter):06d}"


def _state_return(minion):
    ret = {}
    for n in range(125):
        name = f"/etc/app/conf.d/{n:03d}-{minion}.conf"
        ret[f"file_|-app-conf-{n}_|-{name}_|-managed"] = {
            "name": name,
            "changes": {"diff": f"--- \n+++ \n@@ -1 +1 @@\n-workers = {n}\n+workers = {n + 1}\n"},
            "result": True,
            "comment": f"File {name} updated",
            "__sls__": "app.config",
            "__run_num__": n,
            "start_time": "12:00:00.123456",
            "duration": 3.217,
            "__id__": f"app-conf-{n}",
        }
    return ret


def _cmd_return():
    stdout = "\n".join(
        f"/dev/vd{chr(97 + n % 4)}{n}  252G  24G  78G  24% /srv/data{n}" for n in range(18)
    )
    return {"pid": 31337, "retcode": 0, "stdout": stdout, "stderr": ""}


class Job:
    """One job: its publish load and the return load of each minion."""

    def __init__(self, kind, prefix="salt/job", minions=MINIONS_PER_JOB):
        self.jid = new_jid()
        self.kind = kind
        self.prefix = prefix
        self.minions = [f"minion-{n:03d}" for n in range(minions)]
        self.arg = {"test.ping": [], "cmd.run_all": ["df -h"], "state.apply": ["app"]}[kind]
        self.load = {
            "jid": self.jid,
            "tgt_type": "glob",
            "tgt": "bench-*",
            "user": "root",
            "fun": kind,
            "arg": self.arg,
        }

    def ret(self, minion):
        data = {
            "cmd": "_return",
            "id": minion,
            "jid": self.jid,
            "fun": self.kind,
            "fun_args": list(self.arg),
            "retcode": 0,
            "success": True,
            "user": "root",
        }
        if self.kind == "test.ping":
            data["return"] = True
        elif self.kind == "cmd.run_all":
            data["return"] = _cmd_return()
        else:
            data["return"] = _state_return(minion)
            data["out"] = "highstate"
        return data

    def events(self):
        """(tag, data) of the job's new event, then of each return."""
        new = dict(self.load, minions=list(self.minions), missing=[])
        yield f"{self.prefix}/{self.jid}/new", new
        for minion in self.minions:
            yield f"{self.prefix}/{self.jid}/ret/{minion}", self.ret(minion)


def burst(returns, prefix="salt/job"):
    """Jobs with ``returns`` returns in all (a multiple of MINIONS_PER_JOB)."""
    return [Job(KINDS[n % len(KINDS)], prefix) for n in range(returns // MINIONS_PER_JOB)]


def events_of(jobs):
    return [event for job in jobs for event in job.events()]


class JobCache:
    """Salt's local_cache returner on the master's cachedir, as the master uses it."""

    def __init__(self, opts):
        self.returners = salt.loader.returners(opts, {})

    def save(self, jobs):
        for job in jobs:
            # The jid file first, as the master does: the master's maintenance
            # scrubs a job folder without one as corrupt.
            self.returners["local_cache.prep_jid"](passed_jid=job.jid)
            self.returners["local_cache.save_load"](job.jid, job.load, minions=job.minions)
            for minion in job.minions:
                self.returners["local_cache.returner"](job.ret(minion))


class Bus:
    """Fires events on the master bus as the master's workers do."""

    def __init__(self, opts):
        self.event = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False)

    def fire(self, events, rate=None):
        """
        Fire ``events`` (tag, data) as fast as possible, or ``rate`` a second;
        returns when each was fired (time.time()).
        """
        fired = []
        start = time.monotonic()
        for n, (tag, data) in enumerate(events):
            if rate:
                pause = start + n / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            fired.append(time.time())
            # fire_event adds _stamp to the dict it is given: give it a copy.
            self.event.fire_event(dict(data), tag)
        return fired

    def close(self):
        self.event.destroy()
