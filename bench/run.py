#!/usr/bin/env python3
"""
eventstore benchmark: ``make bench`` (or ``python bench/run.py`` with a venv
that has Salt, PyMySQL and saltext-mysql on Salt 3008).

Starts its own MariaDB (tests/mysqlserver.py), PostgreSQL (tests/pgserver.py)
and salt-masters (no minion), fires realistic job returns on the master bus after writing them into
the master job cache with Salt's local_cache returner, and prints one table:
reactor mode against a do-nothing runner, the store function in process, engine
mode against the seed's listener and saltext-mysql's event_return, latency at a
steady rate, and ``eventstore.query jid=`` on a table of 1,000,000 rows.
See bench/README.md for what each figure means and the results.

    python bench/run.py                 # the whole table (~10 minutes)
    python bench/run.py --only engine   # one part: reactor, inprocess, engine, latency, query, polls, events
    python bench/run.py --only query --backend postgres   # one store in inprocess, engine, query
    python bench/run.py --settings      # the reactor's Salt settings, one master each
"""

import argparse
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import psutil  # noqa: E402  (a Salt dependency)
import salt.config  # noqa: E402
import salt.version  # noqa: E402

import mysqlserver  # noqa: E402
import pgserver  # noqa: E402
import workload  # noqa: E402
from master import BIN, REPO, BenchMaster, cpu_seconds  # noqa: E402
from runnerlib import load_runner, pgjsonb_keys  # noqa: E402

USER, PASSWORD = "esbench", "esbench-pw"  # the mysql returner cannot use an empty password
OUT = REPO / ".bench"
SALT_EVENTS = (
    "CREATE TABLE IF NOT EXISTS `salt_events` (`id` BIGINT NOT NULL AUTO_INCREMENT,"
    " `tag` varchar(255) NOT NULL, `data` mediumtext NOT NULL,"
    " `alter_time` TIMESTAMP DEFAULT CURRENT_TIMESTAMP, `master_id` varchar(255) NOT NULL,"
    " PRIMARY KEY (`id`), KEY `tag` (`tag`))"
)
ROWS = []  # the table: one dict per line


def say(*args):
    print(*args, flush=True)


def row(part, case, **values):
    ROWS.append(dict(part=part, case=case, **values))
    say("  " + "  ".join(f"{k}={v}" for k, v in ROWS[-1].items()))


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


# ---------------------------------------------------------------------------
# Setting up: MariaDB, masters, consumers.
# ---------------------------------------------------------------------------


class Bench:
    def __init__(self, root):
        self.root = root
        self.db = mysqlserver.ThrowawayServer()
        with self.db.connect() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'")
            cur.execute(f"GRANT ALL ON *.* TO '{USER}'@'%'")
        self.mysqld = psutil.Process(self.db.proc.pid)
        self.pg = None  # started when a part first asks for it
        self.masters = []
        self.children = []

    def postgres(self):
        if self.pg is None:
            self.pg = pgserver.ThrowawayServer()
        return self.pg

    def database(self, backend="mysql"):
        if backend == "postgres":
            name = self.postgres().create_database()
            return name, pgjsonb_keys(self.pg, name)
        name = self.db.create_database()
        return name, {
            "mysql.host": self.db.host,
            "mysql.port": self.db.port,
            "mysql.user": USER,
            "mysql.pass": PASSWORD,
            "mysql.db": name,
        }

    def db_processes(self, backend="mysql"):
        """The database server's processes now (PostgreSQL: the postmaster and its children)."""
        if backend == "sqlite":
            return []
        if backend != "postgres":
            return [self.mysqld]
        with open(os.path.join(self.pg.datadir, "postmaster.pid"), encoding="utf-8") as handle:
            postmaster = psutil.Process(int(handle.readline()))
        return [postmaster, *postmaster.children(recursive=True)]

    def db_cpu_meter(self, backend="mysql"):
        """
        A function giving the CPU seconds the database server spent since this
        call, also in processes started since (PostgreSQL's backend per connection).
        """
        before = {proc: cpu_seconds([proc]) for proc in self.db_processes(backend)}
        return lambda: sum(
            cpu_seconds([proc]) - before.get(proc, 0.0) for proc in self.db_processes(backend)
        )

    def master(self, name, overrides):
        master = BenchMaster(self.root, name, overrides)
        self.masters.append(master)
        return master.start()

    def salt_run(self, master, *args):
        result = subprocess.run(
            [str(BIN / "salt-run"), "-c", str(master.conf_file.parent), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"salt-run {' '.join(args)}: {result.stdout}{result.stderr}")
        return result.stdout

    def count(self, name, sql, backend="mysql"):
        if backend == "postgres":
            with self.pg.connect(name) as conn:
                return conn.execute(sql).fetchone()[0]
        with self.db.connect(name) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]

    def close(self):
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for master in self.masters:
            master.stop()
        self.db.stop()
        if self.pg is not None:
            self.pg.stop()


def wait_for(get, expected, idle=10.0, fire=None):
    """
    Poll ``get()`` until it reaches ``expected`` or stops growing for ``idle``
    seconds; returns (last value, when it last grew).  ``fire`` is called at
    each poll (to flush consumers that only write when the next event comes).
    """
    last, when = get(), time.time()
    while last < expected and time.time() - when < idle:
        time.sleep(0.05)
        if fire:
            fire()
        now = get()
        if now != last:
            last, when = now, time.time()
    return last, when


# ---------------------------------------------------------------------------
# Reactor mode.
# ---------------------------------------------------------------------------


def reactor_master(
    bench, name="reactor", lines=("salt/job/*/new", "salt/job/*/ret/*"), sls=None, **settings
):
    """
    A master reacting to ``lines`` with eventstore's reactor SLS (or ``sls``),
    and to the same lines under ``bench/noop/`` with the do-nothing runner.
    The reactor and latency parts keep the new line: their figures compare
    with the earlier runs'.
    """
    db_name, mysql = bench.database()
    root = Path(bench.root) / name
    sls = sls or (REPO / "reactor" / "eventstore.sls").read_text()
    reactor = [{line: [str(root / "srv/reactor/eventstore.sls")]} for line in lines]
    reactor += [
        {line.replace("salt/job/", "bench/noop/"): [str(root / "srv/reactor/noop.sls")]}
        for line in lines
    ]
    overrides = dict(
        mysql,
        benchnoop_counter=str(root / "noop.count"),
        reactor=reactor,
        **settings,
    )
    master = BenchMaster(bench.root, name, overrides)
    (master.root / "srv/reactor/eventstore.sls").write_text(sls)
    # The same SLS, rendered the same way, calling the do-nothing runner for
    # the same job events under bench/noop/ (which it would take for other events).
    noop = sls.replace("runner.eventstore.store", "runner.benchnoop.store")
    job_tag = 'tag.startswith("salt/job/")'
    if job_tag in noop:
        noop = noop.replace(job_tag, 'tag.startswith(("salt/job/", "bench/noop/"))')
    (master.root / "srv/reactor/noop.sls").write_text(noop)
    bench.masters.append(master)
    master.start()
    bench.salt_run(master, "eventstore.init")
    counter = master.root / "noop.count"
    rig = {
        "master": master,
        "db": db_name,
        "cache": workload.JobCache(master.opts),
        "bus": workload.Bus(master.opts),
        "noop": lambda: counter.stat().st_size if counter.exists() else 0,
        "rows": lambda: bench.count(
            db_name, "SELECT (SELECT COUNT(*) FROM salt_returns) + (SELECT COUNT(*) FROM jids)"
        ),
    }
    # Warm up both paths (loaders, connections) before anything is timed:
    # ten returns, ten runner calls or ten rows and the job's load.
    for prefix, get, expected in (("bench/noop", rig["noop"], 10), ("salt/job", rig["rows"], 11)):
        jobs = workload.burst(workload.MINIONS_PER_JOB, prefix)
        rig["cache"].save(jobs)
        events = workload.events_of(jobs)[1:11]
        base = get()
        rig["bus"].fire(events)
        wait_for(get, base + expected, idle=60)
    rig["reactor"] = master.process("Reactor")
    return rig


def reactor_burst(bench, rig, mode, returns):
    jobs = workload.burst(returns, "bench/noop" if mode == "noop" else "salt/job")
    rig["cache"].save(jobs)
    events = workload.events_of(jobs)
    get = rig["noop"] if mode == "noop" else rig["rows"]
    base = get()
    cpu0, db0 = cpu_seconds([rig["reactor"]]), cpu_seconds([bench.mysqld])
    start = time.time()
    rig["bus"].fire(events)
    got, end = wait_for(get, base + len(events), idle=30)
    got -= base
    return {
        "events": len(events),
        "seconds": end - start,
        "per_s": got / (end - start),
        "lost": len(events) - got,
        "cpu": (cpu_seconds([rig["reactor"]]) - cpu0) / got * 1000,
        "db_cpu": (cpu_seconds([bench.mysqld]) - db0) / got * 1000,
    }


def part_reactor(bench, returns, rounds):
    say(
        f"reactor mode: {returns} returns through a do-nothing runner and eventstore, {rounds} rounds"
    )
    rig = reactor_master(bench)
    results = {"noop": [], "eventstore": []}
    for _ in range(rounds):
        for mode in ("noop", "eventstore"):
            results[mode].append(reactor_burst(bench, rig, mode, returns))
    for mode, label in (("noop", "do-nothing runner"), ("eventstore", "eventstore.store")):
        runs = results[mode]
        row(
            "reactor",
            label,
            returns=f"{returns}+{returns // workload.MINIONS_PER_JOB} loads",
            per_s=round(statistics.mean(r["per_s"] for r in runs), 1),
            lost=sum(r["lost"] for r in runs),
            consumer_cpu=round(statistics.mean(r["cpu"] for r in runs), 1),
            db_cpu=round(statistics.mean(r["db_cpu"] for r in runs), 2),
            other="runs: " + ", ".join(f"{r['seconds']:.1f} s" for r in runs),
        )
    ratio = statistics.mean(r["per_s"] for r in results["eventstore"]) / statistics.mean(
        r["per_s"] for r in results["noop"]
    )
    row("reactor", "time ratio do-nothing/eventstore", other=f"{ratio:.3f} (target >= 0.90)")
    return rig


def part_latency(bench, rig, rate=20, seconds=30):
    say(
        f"latency: reactor mode at a steady {rate} returns/s for {seconds} s, eventstore and do-nothing"
    )
    for mode in ("eventstore", "noop"):
        latencies, lost = steady(bench, rig, mode, rate, seconds)
        row(
            "latency",
            f"{rate} returns/s, " + ("eventstore" if mode != "noop" else "do-nothing runner"),
            returns=len(latencies),
            lost=lost,
            other=f"event to {'committed row' if mode != 'noop' else 'runner done'}:"
            f" p50 {pct(latencies, 50):.0f} ms, p90 {pct(latencies, 90):.0f} ms,"
            f" p99 {pct(latencies, 99):.0f} ms, max {max(latencies):.0f} ms",
        )


def steady(bench, rig, mode, rate, seconds):
    """
    Fire returns at ``rate`` a second; when each was fired and when it was
    seen done (polled every 10 ms): a row committed, or the do-nothing
    runner's counter past it (reactions run in ten threads: about in order).
    """
    jobs = workload.burst(rate * seconds, "bench/noop" if mode == "noop" else "salt/job")
    rig["cache"].save(jobs)
    events = workload.events_of(jobs)
    fired = []
    thread = threading.Thread(target=lambda: fired.extend(rig["bus"].fire(events, rate=rate)))
    base = rig["noop"]()
    seen = {}
    thread.start()
    with bench.db.connect(rig["db"]) as conn:
        while thread.is_alive() or len(seen) < len(events):
            now = time.time()
            if mode == "noop":
                for n in range(len(seen), rig["noop"]() - base):
                    seen[n] = now
            else:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT jid, id FROM salt_returns WHERE jid IN %s",
                        ([job.jid for job in jobs],),
                    )
                    done = {f"salt/job/{jid}/ret/{minion}" for jid, minion in cur.fetchall()}
                conn.commit()
                for n, (tag, _) in enumerate(events):
                    if tag in done:
                        seen.setdefault(n, now)
            if not thread.is_alive() and time.time() - fired[-1] > 30:
                break
            time.sleep(0.01)
    thread.join()
    returns = [n for n, (tag, _) in enumerate(events) if "/ret/" in tag]
    latencies = [(seen[n] - fired[n]) * 1000 for n in returns if n in seen]
    return latencies, len(returns) - len(latencies)


#: The stores the in-process and query parts measure.
BACKENDS = ["mysql", "sqlite", "postgres"]

# ---------------------------------------------------------------------------
# Poll storm: what a master's reactor sees while long jobs run.
# ---------------------------------------------------------------------------

#: Salt's defaults: the salt CLI's timeout, then gather_job_timeout between polls.
CLI_TIMEOUT, POLL_EVERY = 5, 10
REACTOR_HWM = 10_000


def poll_count(job_seconds):
    """How many times the client polls a job of ``job_seconds`` with saltutil.find_job."""
    return max(0, -(-(job_seconds - CLI_TIMEOUT) // POLL_EVERY))


def poll_events(job, job_seconds):
    """
    The find_job polls of ``job`` while it runs: one ``new`` and one return
    per running minion each time, as LocalClient.get_iter_returns makes them.
    """
    events = []
    for _ in range(poll_count(job_seconds)):
        jid = workload.new_jid()
        events.append(
            (
                f"salt/job/{jid}/new",
                {
                    "jid": jid,
                    "tgt_type": "list",
                    "tgt": job.minions,
                    "user": "root",
                    "fun": "saltutil.find_job",
                    "arg": [job.jid],
                    "minions": job.minions,
                    "missing": [],
                },
            )
        )
        for minion in job.minions:
            events.append(
                (
                    f"salt/job/{jid}/ret/{minion}",
                    {
                        "cmd": "_return",
                        "id": minion,
                        "jid": jid,
                        "fun": "saltutil.find_job",
                        "fun_args": [job.jid],
                        "retcode": 0,
                        "success": True,
                        "user": "root",
                        "return": {
                            "jid": job.jid,
                            "fun": job.kind,
                            "pid": 4242,
                            "user": "root",
                            "arg": job.arg,
                            "tgt": "bench-*",
                            "tgt_type": "glob",
                        },
                    },
                )
            )
    return events


class RunnerJobs:
    """Counts the eventstore runner jobs the reactor starts and finishes, from the bus."""

    def __init__(self, opts):
        import salt.utils.event  # pylint: disable=import-outside-toplevel

        self.started = self.finished = 0
        self._stop = threading.Event()
        self._event = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)
        self._event.subscribe("salt/run/")
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self):
        while not self._stop.is_set():
            event = self._event.get_event(wait=0.2, full=True, tag="salt/run/")
            if not event or event["data"].get("fun") != "runner.eventstore.store":
                continue
            if event["tag"].endswith("/new"):
                self.started += 1
            elif event["tag"].endswith("/ret"):
                self.finished += 1

    def close(self):
        self._stop.set()
        self._thread.join()
        self._event.destroy()


def reactor_idle(rig, runner_jobs):
    """
    Wait until the reactor has dealt with every event fired so far: a
    do-nothing reaction fired last has run (reactions start in order), and
    every eventstore runner job started has finished.
    """
    base = rig["noop"]()
    rig["bus"].fire([("bench/noop/00000000000000000000/ret/sentinel", {"id": "sentinel"})])
    wait_for(rig["noop"], base + 1, idle=120)
    wait_for(lambda: runner_jobs.finished, runner_jobs.started, idle=60)


def storm(bench, rig, jobs, job_seconds):
    """
    Fire the polls of ``jobs`` running ``job_seconds``, then their real job
    events; measure the reactor's CPU and runner jobs in each phase.
    """
    runner_jobs = RunnerJobs(rig["master"].opts)
    try:
        reactor_idle(rig, runner_jobs)
        rig["cache"].save(jobs)
        polls = [event for job in jobs for event in poll_events(job, job_seconds)]
        cpu0, jobs0 = cpu_seconds([rig["reactor"]]), runner_jobs.started
        start = time.time()
        rig["bus"].fire(polls)
        reactor_idle(rig, runner_jobs)
        polls_seconds = time.time() - start
        cpu1, jobs1 = cpu_seconds([rig["reactor"]]), runner_jobs.started
        real = workload.events_of(jobs)
        returns = sum(len(job.minions) for job in jobs)
        base = bench.count(rig["db"], "SELECT COUNT(*) FROM salt_returns")
        start = time.time()
        rig["bus"].fire(real)
        got, end = wait_for(
            lambda: bench.count(rig["db"], "SELECT COUNT(*) FROM salt_returns") - base,
            returns,
            idle=60,
        )
        reactor_idle(rig, runner_jobs)
        cpu2, jobs2 = cpu_seconds([rig["reactor"]]), runner_jobs.started
    finally:
        runner_jobs.close()
    # The do-nothing sentinels cost a reaction each: 1 in the polls' phase, 1 in the real one.
    return {
        "polls": len(polls),
        "real_events": len(real),
        "stored": got,
        "runner_jobs_polls": jobs1 - jobs0,
        "runner_jobs_real": jobs2 - jobs1,
        "cpu_per_poll_ms": (cpu1 - cpu0) / max(len(polls), 1) * 1000,
        "cpu_per_stored_ms": (cpu2 - cpu1) / max(got, 1) * 1000,
        "polls_per_s": len(polls) / polls_seconds,
        "stored_per_s": got / max(end - start, 1e-9),
    }


def largest_fleet(job_seconds, runner_jobs_per_s, ignored_seconds, polls_start_runner_jobs):
    """
    The most minions one job of ``job_seconds`` may run on before the
    reactor's queue reaches ``reactor_worker_hwm`` (or, with the polls decided
    in the SLS, before rendering one poll takes longer than the pause to the
    next), all returning at once at the end (the worst case).
    """

    def holds(minions):
        queued = 0.0
        for _ in range(poll_count(job_seconds)):
            if polls_start_runner_jobs:
                queued = max(0.0, queued - POLL_EVERY * runner_jobs_per_s) + minions + 1
                if queued > REACTOR_HWM:
                    return False
            elif (minions + 1) * ignored_seconds > POLL_EVERY:
                return False
        if polls_start_runner_jobs:
            queued = max(0.0, queued - POLL_EVERY * runner_jobs_per_s) + minions + 1
            return queued <= REACTOR_HWM
        return minions <= REACTOR_HWM

    low, high = 0, 1_000_000
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if holds(middle) else (low, middle - 1)
    return low


#: (name, reactor lines, whether the SLS decides polls): what a master ran before and after.
POLL_CONFIGS = (
    (
        "before: new + ret lines, every event to the runner",
        ("salt/job/*/new", "salt/job/*/ret/*"),
        False,
    ),
    ("after: ret line, polls and ignore_funs decided in the SLS", ("salt/job/*/ret/*",), True),
)


def poll_master(bench, name, lines, decides):
    # Before, the SLS (Jinja) handed every event to the runner.
    sls = (REPO / "reactor" / "eventstore.sls") if decides else (HERE / "reactor" / "before.sls")
    return reactor_master(bench, name, lines=lines, sls=sls.read_text())


def part_polls(bench, minions_jobs=3, job_seconds=60, one_minion_jobs=200):
    say(
        f"poll storm: {minions_jobs} jobs of {workload.MINIONS_PER_JOB} minions running {job_seconds} s"
        f" ({poll_count(job_seconds)} polls each), then {one_minion_jobs} one-minion jobs"
    )
    fleets = {}
    for n, (case, lines, decides) in enumerate(POLL_CONFIGS):
        rig = poll_master(bench, f"polls{n}", lines, decides)
        result = storm(
            bench, rig, workload.burst(minions_jobs * workload.MINIONS_PER_JOB), job_seconds
        )
        runner_jobs = result["runner_jobs_polls"] + result["runner_jobs_real"]
        row(
            "poll storm",
            case,
            returns=f"{result['stored']} stored, {result['polls']} poll events",
            per_s=round(result["stored_per_s"], 1),
            lost=result["real_events"] - minions_jobs - result["stored"],
            other=f"runner jobs per stored return {runner_jobs / result['stored']:.2f}"
            f" (polls {result['runner_jobs_polls']}, real {result['runner_jobs_real']});"
            f" Reactor CPU per poll event {result['cpu_per_poll_ms']:.2f} ms,"
            f" per stored return {result['cpu_per_stored_ms']:.1f} ms"
            f" (ratio {result['cpu_per_poll_ms'] / result['cpu_per_stored_ms']:.3f});"
            f" polls handled at {result['polls_per_s']:.0f}/s",
        )
        fleets[case] = [
            largest_fleet(
                seconds, result["stored_per_s"], result["cpu_per_poll_ms"] / 1000, not decides
            )
            for seconds in (30, 60, 300, 900)
        ]
        single = storm(
            bench, rig, [workload.Job("test.ping", minions=1) for _ in range(one_minion_jobs)], 0
        )
        row(
            "one-minion jobs",
            case,
            returns=single["stored"],
            per_s=round(single["stored_per_s"], 1),
            other=f"runner jobs per stored return {single['runner_jobs_real'] / single['stored']:.2f};"
            f" Reactor CPU per stored return {single['cpu_per_stored_ms']:.1f} ms",
        )
        rig["bus"].close()
        rig["master"].stop()
    for case, sizes in fleets.items():
        row(
            "largest fleet",
            case,
            other="job of 30 s / 60 s / 5 min / 15 min: "
            + " / ".join(f"{size:,}" for size in sizes)
            + " minions",
        )


# ---------------------------------------------------------------------------
# In process: store() from 10 threads, as the reactor calls it.
# ---------------------------------------------------------------------------


def part_inprocess(bench, returns):
    say(f"in process: eventstore.store from 10 threads, {returns} returns, job cache verified")
    for backend in BACKENDS:
        cachedir = tempfile.mkdtemp(dir=bench.root, prefix=f"inproc-{backend}-")
        opts = salt.config.master_config(None)
        opts["cachedir"] = cachedir
        if backend != "sqlite":
            db_name, keys = bench.database(backend)
            opts.update(keys)
        jobs = workload.burst(returns)
        workload.JobCache(opts).save(jobs)
        events = workload.events_of(jobs)
        es = load_runner(opts)
        es.init()
        timings, verdicts = [], []

        def worker(mine):
            for tag, data in mine:
                start = time.perf_counter()
                verdicts.append(es.store(tag, data))
                timings.append((time.perf_counter() - start) * 1000)

        threads = [threading.Thread(target=worker, args=(events[n::10],)) for n in range(10)]
        db_cpu = bench.db_cpu_meter(backend)
        cpu0 = time.process_time()
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
        stored = verdicts.count("stored")
        row(
            "in process",
            f"store(), 10 threads, {backend}",
            returns=len(events),
            per_s=round(len(events) / wall),
            lost=len(events) - stored,
            consumer_cpu=round((time.process_time() - cpu0) / len(events) * 1000, 2),
            db_cpu=round(db_cpu() / len(events) * 1000, 2) if backend != "sqlite" else "",
            other=f"per call p50 {pct(timings, 50):.1f} ms, p99 {pct(timings, 99):.1f} ms",
        )
        # What the engine's writer does with the same kind of events.
        jobs = workload.burst(returns)
        workload.JobCache(opts).save(jobs)
        batch = [{"tag": tag, "data": data} for tag, data in workload.events_of(jobs)]
        cpu0 = time.process_time()
        start = time.perf_counter()
        counts = {}
        for n in range(0, len(batch), 500):
            for verdict, count in es.store_events(batch[n : n + 500]).items():
                counts[verdict] = counts.get(verdict, 0) + count
        wall = time.perf_counter() - start
        row(
            "in process",
            f"store_events(), batches of 500, {backend}",
            returns=len(batch),
            per_s=round(len(batch) / wall),
            lost=len(batch) - counts["stored"],
            consumer_cpu=round((time.process_time() - cpu0) / len(batch) * 1000, 2),
        )


# ---------------------------------------------------------------------------
# Engine mode against the seed's listener and saltext-mysql's event_return.
# ---------------------------------------------------------------------------

CONSUMERS = {
    "seed listener (INSERT+COMMIT per event)": {},
    "event_return: mysql": {"event_return": "mysql"},
    "event_return: mysql, event_return_queue 100": {
        "event_return": "mysql",
        "event_return_queue": 100,
        "event_return_queue_max_seconds": 1,
    },
    "eventstore engine": {"engines": [{"eventstore": {}}]},
    "eventstore engine, postgres": {"engines": [{"eventstore": {}}], "backend": "postgres"},
}


def consumer_rig(bench, case, settings):
    settings = dict(settings)
    backend = settings.pop("backend", "mysql")
    db_name, keys = bench.database(backend)
    name = "c" + str(list(CONSUMERS).index(case))
    master = bench.master(name, dict(keys, **settings))
    bench.salt_run(master, "eventstore.init")
    if backend == "mysql":
        with bench.db.connect(db_name) as conn, conn.cursor() as cur:
            cur.execute(SALT_EVENTS)
    if "event_return" in settings:
        sql = "SELECT COUNT(*) FROM salt_events WHERE tag LIKE 'salt/job/%%/ret/%%'"
        consumer = master.process("EventReturn")
    elif "engines" in settings:
        sql = "SELECT COUNT(*) FROM salt_returns"
        consumer = master.process("Engine(salt.loaded.ext.engines.eventstore)")
    else:
        sql = "SELECT COUNT(*) FROM salt_returns"
        url = f"mysql://{USER}:{PASSWORD}@{bench.db.host}:{bench.db.port}/{db_name}"
        seed = subprocess.Popen(
            [sys.executable, str(HERE / "seed_listener.py"), str(master.conf_file), url],
            stdout=subprocess.PIPE,
            text=True,
        )
        bench.children.append(seed)
        seed.stdout.readline()  # "listening"
        consumer = psutil.Process(seed.pid)
    rig = {
        "master": master,
        "consumer": consumer,
        "cache": workload.JobCache(master.opts),
        "bus": workload.Bus(master.opts),
        "get": lambda: bench.count(db_name, sql.replace("%%", "%"), backend),
        "backend": backend,
    }
    # Until the consumer has stored a probe, it may not be listening yet; a new
    # probe each time, so that a late copy is never counted as a burst's.
    flush = lambda: rig["bus"].fire([("bench/flush", {})])  # noqa: E731
    while rig["get"]() == 0:
        jobs = workload.burst(workload.MINIONS_PER_JOB)
        rig["cache"].save(jobs)
        rig["bus"].fire(workload.events_of(jobs)[:3])
        for _ in range(10):
            time.sleep(0.5)
            flush()  # event_return_queue writes when the next event comes
            if rig["get"]():
                break
    wait_for(rig["get"], 2, idle=3, fire=flush)
    return rig


def consumer_burst(bench, rig, returns, backlog=False):
    jobs = workload.burst(returns)
    rig["cache"].save(jobs)
    return fire_and_count(bench, rig, workload.events_of(jobs), returns, backlog)


def fire_and_count(bench, rig, events, expected, backlog=False):
    """
    Fire ``events`` at the rig's master and count the rows its consumer
    stores until ``expected`` more are there or none come for 15 s.
    """
    base = rig["get"]()
    db_cpu = bench.db_cpu_meter(rig["backend"])
    cpu0 = cpu_seconds([rig["consumer"]])
    if backlog:
        # Stopped while the burst is fired, then timed draining it: its capacity.
        rig["consumer"].suspend()
        rig["bus"].fire(events)
        start = time.time()
        rig["consumer"].resume()
    else:
        start = time.time()
        rig["bus"].fire(events)
    fired_in = time.time() - start
    last_flush = [0.0]

    def flush():
        # event_return_queue writes when an event comes: keep some coming.
        if time.time() - last_flush[0] > 0.5:
            rig["bus"].fire([("bench/flush", {})])
            last_flush[0] = time.time()

    got, end = wait_for(rig["get"], base + expected, idle=15, fire=flush)
    got -= base
    return {
        "per_s": got / (end - start),
        "fired_per_s": len(events) / fired_in if not backlog else None,
        "lost": expected - got,
        "cpu": (cpu_seconds([rig["consumer"]]) - cpu0) / max(got, 1) * 1000,
        "db_cpu": db_cpu() / max(got, 1) * 1000,
    }


def part_engine(bench, returns, big):
    say(f"engine mode against the peers: {returns} returns live, then {returns} as a backlog")
    for case, settings in CONSUMERS.items():
        if settings.get("backend", "mysql") not in BACKENDS:
            continue
        rig = consumer_rig(bench, case, settings)
        live = consumer_burst(bench, rig, returns)
        backlog = consumer_burst(bench, rig, returns, backlog=True)
        row(
            "engine mode",
            case,
            returns=returns,
            per_s=round(live["per_s"]),
            lost=live["lost"] + backlog["lost"],
            consumer_cpu=round(live["cpu"], 2),
            db_cpu=round(live["db_cpu"], 2),
            other=f"fired at {live['fired_per_s']:.0f}/s; backlog drained at {backlog['per_s']:.0f}/s",
        )
        if "engines" in settings:
            result = consumer_burst(bench, rig, big)
            row(
                "engine mode",
                f"{case}, {big:,} returns",
                returns=big,
                per_s=round(result["per_s"]),
                lost=result["lost"],
                consumer_cpu=round(result["cpu"], 2),
                db_cpu=round(result["db_cpu"], 2),
                other=f"fired at {result['fired_per_s']:.0f}/s",
            )
        rig["bus"].close()
        rig["master"].stop()


# ---------------------------------------------------------------------------
# Events (salt_events): a beacon storm, eventstore's engine against
# saltext-mysql's event_return on the same storm, and the reactor's cost.
# ---------------------------------------------------------------------------

BEACON_GLOB = "salt/beacon/*"
EVENT_CONSUMERS = {
    "event_return: mysql": {"event_return": "mysql", "event_return_whitelist": [BEACON_GLOB]},
    "event_return: mysql, event_return_queue 100": {
        "event_return": "mysql",
        "event_return_whitelist": [BEACON_GLOB],
        "event_return_queue": 100,
        "event_return_queue_max_seconds": 1,
    },
    "eventstore engine": {"engines": [{"eventstore": {}}]},
    "eventstore reactor": {"reactor": True},  # the line and SLS: events_rig
}
#: The process that stores the events, by the setting that starts it.
EVENT_PROCESSES = {
    "event_return": "EventReturn",
    "engines": "Engine(salt.loaded.ext.engines.eventstore)",
    "reactor": "Reactor",
}


def beacon_storm(events, minions, round_no):
    """
    ``events`` beacon events from ``minions`` minions, as the master fires
    them (``salt/beacon/<minion>/<beacon>/``, the beacon's data and the id).
    """
    beacons = ("diskusage", "load", "memusage", "status")
    return [
        (
            f"salt/beacon/m{n % minions:04d}/{beacons[n % len(beacons)]}/",
            {
                "id": f"m{n % minions:04d}",
                "data": {"/": round(random.uniform(10, 99), 1), "round": round_no, "n": n},
            },
        )
        for n in range(events)
    ]


def events_rig(bench, case, settings):
    db_name, keys = bench.database()
    name = "ev" + str(list(EVENT_CONSUMERS).index(case))
    root = Path(bench.root) / name
    if "reactor" in settings:
        sls = root / "srv/reactor/eventstore.sls"
        settings = {"reactor": [{BEACON_GLOB: [str(sls)]}]}
    master = BenchMaster(
        bench.root, name, dict(keys, eventstore={"events": [BEACON_GLOB]}, **settings)
    )
    if "reactor" in settings:
        sls.parent.mkdir(parents=True, exist_ok=True)
        sls.write_text((REPO / "reactor" / "eventstore.sls").read_text())
    bench.masters.append(master)
    master.start()
    bench.salt_run(master, "eventstore.init")
    sql = "SELECT COUNT(*) FROM salt_events WHERE tag LIKE 'salt/beacon/%'"
    rig = {
        "master": master,
        "bus": workload.Bus(master.opts),
        "get": lambda: bench.count(db_name, sql),
        "backend": "mysql",
        "consumer": master.process(next(t for k, t in EVENT_PROCESSES.items() if k in settings)),
    }
    flush = lambda: rig["bus"].fire([("bench/flush", {})])  # noqa: E731
    # Warm up (loaders, connections) until the consumer stores.
    rig["bus"].fire(beacon_storm(3, 3, -1))
    wait_for(rig["get"], 3, idle=60, fire=flush)
    return rig


def part_events(bench, events, minions, reactor_events):
    say(f"events: a beacon storm of {events} events from {minions} minions per consumer")
    cpu = {}
    for case, settings in EVENT_CONSUMERS.items():
        rig = events_rig(bench, case, settings)
        count = reactor_events if "reactor" in settings else events
        result = fire_and_count(bench, rig, beacon_storm(count, minions, 0), count)
        cpu[case] = result["cpu"]
        row(
            "events",
            case,
            returns=count,
            per_s=round(result["per_s"]),
            lost=result["lost"],
            consumer_cpu=round(result["cpu"], 3),
            db_cpu=round(result["db_cpu"], 3),
            other=f"fired at {result['fired_per_s']:.0f}/s; {minions} minions",
        )
        rig["bus"].close()
        rig["master"].stop()
    engine = cpu["eventstore engine"]
    for case in list(EVENT_CONSUMERS)[:2]:
        row(
            "events",
            f"CPU per event, eventstore engine / {case}",
            other=f"{engine / cpu[case]:.2f} (target <= 0.33)",
        )
    reactor_ms = cpu["eventstore reactor"]
    row(
        "events",
        "reactor: rate one core holds",
        other=f"{1000 / reactor_ms:.0f} events/s at {reactor_ms:.1f} ms CPU each",
    )


# ---------------------------------------------------------------------------
# eventstore.query jid= on 1,000,000 rows.
# ---------------------------------------------------------------------------


def bulk_rows(jobs, minions=100):
    funs = ("test.ping", "cmd.run", "state.apply")
    for n in range(jobs):
        jid = f"2026010100{n:010d}"
        fun = funs[n % 3]
        for m in range(minions):
            minion = f"minion-{m:03d}"
            ret = json.dumps({"stdout": f"job {n} on {minion}", "retcode": 0})
            full = json.dumps(
                {
                    "fun": fun,
                    "jid": jid,
                    "id": minion,
                    "return": json.loads(ret),
                    "retcode": 0,
                    "success": True,
                    "fun_args": [],
                }
            )
            yield (fun, jid, ret, minion, "1", full)


def part_query(bench, total):
    jobs = total // 100
    say(f"query: eventstore.query jid= on {total:,} rows ({jobs:,} jobs of 100 minions)")
    for backend in BACKENDS:
        opts = salt.config.master_config(None)
        opts["cachedir"] = tempfile.mkdtemp(dir=bench.root, prefix=f"query-{backend}-")
        if backend != "sqlite":
            _, keys = bench.database(backend)
            opts.update(keys)
        es = load_runner(opts)
        es.init()
        store = es._store()
        statement = store.sql(es.lib.store.INSERT["salt_returns"])
        start = time.time()
        chunk = []

        def flush(rows):
            def work(cur):
                cur.executemany(statement, rows)

            store.run(work)

        for values in bulk_rows(jobs):
            chunk.append(values)
            if len(chunk) == 20000:
                flush(chunk)
                chunk = []
        if chunk:
            flush(chunk)
        loaded = time.time() - start
        (count,) = store.select("SELECT COUNT(*) FROM salt_returns", ())[0]
        timings = []
        for jid in random.Random(4).sample(range(jobs), 200):
            t0 = time.perf_counter()
            found = es.query(jid=f"2026010100{jid:010d}")
            timings.append((time.perf_counter() - t0) * 1000)
            assert len(found) == 100, len(found)
        # What query(jid=) runs.
        select = es.lib.readback.SELECT_JID.format(where="WHERE `jid` = %s")
        explain = {"sqlite": "EXPLAIN QUERY PLAN "}.get(backend, "EXPLAIN ")
        plan = store.select(explain + select, ("x",))
        row(
            "query",
            f"eventstore.query jid=, {backend}",
            returns=count,
            other=f"p50 {pct(timings, 50):.1f} ms, p99 {pct(timings, 99):.1f} ms for 100 rows"
            f" (loaded in {loaded:.0f} s; plan: {plan_summary(plan)})",
        )


def plan_summary(plan):
    text = " ".join(str(part) for line in plan for part in line if part is not None)
    for key in (
        "sqlite_autoindex_salt_returns_1",
        "salt_returns_jid_id_key",
        "jid_id",
        "`jid`",
        "jid",
    ):
        if key in text:
            return f"index {key.strip('`')}"
    return text[:60]


# ---------------------------------------------------------------------------
# The reactor's Salt settings.
# ---------------------------------------------------------------------------

SETTINGS = {
    "defaults": {},
    "reactor_worker_threads: 2": {"reactor_worker_threads": 2},
    "reactor_worker_threads: 20": {"reactor_worker_threads": 20},
    "runnerclient_returns: false": {"runnerclient_returns": False},
    "quiet: true": {"quiet": True},
    "runnerclient_returns: false, quiet: true": {"runnerclient_returns": False, "quiet": True},
}


def part_settings(bench, returns):
    say(f"reactor settings: {returns} returns through eventstore, one master per setting")
    for n, (case, settings) in enumerate(SETTINGS.items()):
        rig = reactor_master(bench, f"settings{n}", **settings)
        result = reactor_burst(bench, rig, "eventstore", returns)
        row(
            "reactor settings",
            case,
            returns=returns,
            per_s=round(result["per_s"], 1),
            lost=result["lost"],
            consumer_cpu=round(result["cpu"], 1),
            db_cpu=round(result["db_cpu"], 2),
        )
        rig["bus"].close()
        rig["master"].stop()


# ---------------------------------------------------------------------------


COLUMNS = (
    ("part", "part"),
    ("case", "case"),
    ("returns", "returns"),
    ("per_s", "returns/s"),
    ("lost", "lost"),
    ("consumer_cpu", "consumer CPU s/1000"),
    ("db_cpu", "DB server CPU s/1000"),
    ("other", "other"),
)


def table():
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for line in ROWS:
        lines.append("| " + " | ".join(str(line.get(key, "")) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def machine():
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo", encoding="utf-8")
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"{os.cpu_count()} cores ({model}), {psutil.virtual_memory().total / 2**30:.0f} GiB;"
        f" Python {platform.python_version()}, Salt {salt.version.__version__},"
        f" load average at start {os.getloadavg()[0]:.2f}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=("reactor", "latency", "inprocess", "engine", "query", "polls", "events"),
    )
    parser.add_argument("--settings", action="store_true", help="the reactor settings instead")
    parser.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="the stores the inprocess, engine and query parts measure (default: all)",
    )
    parser.add_argument("--returns", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--big", type=int, default=20000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=5000, help="beacon events per storm")
    parser.add_argument("--minions", type=int, default=500, help="minions the beacons come from")
    parser.add_argument("--reactor-events", type=int, default=500)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    OUT.mkdir(exist_ok=True)
    # A short root: UNIX socket paths have at most 107 bytes.
    root = tempfile.mkdtemp(prefix="esbench-")
    started = time.time()
    at_start = machine()
    say(f"machine: {at_start}")
    BACKENDS[:] = args.backend or BACKENDS
    bench = Bench(root)
    try:
        if args.settings:
            part_settings(bench, args.returns)
        else:
            parts = args.only or [
                "reactor",
                "latency",
                "inprocess",
                "engine",
                "query",
                "polls",
                "events",
            ]
            rig = None
            if "reactor" in parts:
                rig = part_reactor(bench, args.returns, args.rounds)
            if "latency" in parts:
                part_latency(bench, rig or reactor_master(bench))
            if rig:
                rig["bus"].close()
                rig["master"].stop()
            if "inprocess" in parts:
                part_inprocess(bench, args.returns)
            if "engine" in parts:
                part_engine(bench, args.returns, args.big)
            if "query" in parts:
                part_query(bench, args.rows)
            if "polls" in parts:
                part_polls(bench)
            if "events" in parts:
                part_events(bench, args.events, args.minions, args.reactor_events)
    finally:
        bench.close()
        subprocess.run(["rm", "-rf", root], check=False)
    result = (
        f"machine: {at_start}\ncommand: {' '.join(['python', 'bench/run.py', *sys.argv[1:]])}\n"
        f"took {time.time() - started:.0f} s, load average at the end {os.getloadavg()[0]:.2f}\n\n{table()}\n"
    )
    (OUT / ("settings.md" if args.settings else "results.md")).write_text(result)
    (OUT / ("settings.json" if args.settings else "results.json")).write_text(
        json.dumps(ROWS, indent=1)
    )
    say("", result)


if __name__ == "__main__":
    main()
