"""
What catch-up rounds cost (issue 11): a round on a master job cache of
10,000 jobs x 10 minions when nothing is missing, a round over the jobs a
busy master changed in one interval, the rate at which rounds store what the
database lacks, and the spool written back after a long outage (10,000 rows)
with what it does to a live store meanwhile.  In process, against a
throwaway MariaDB; the job cache written by Salt's own local_cache returner.

    make bench-catch-up                       # ~5 minutes
    python bench/catch_up.py --jobs 1000      # smaller
"""

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import mysqlserver  # noqa: E402
import psutil  # noqa: E402
import salt.config  # noqa: E402
import salt.payload  # noqa: E402
import salt.utils.jid  # noqa: E402
from runnerlib import load_runner, mysql_keys, ret_event  # noqa: E402


def say(text):
    print(text, flush=True)


def cpu(proc=None):
    """CPU seconds of ``proc`` (psutil: 10 ms ticks), or of this process, precisely."""
    if proc is None:
        return time.process_time()
    times = proc.cpu_times()
    return times.user + times.system


def write_job_cache(opts, jobs, minions):
    """
    ``jobs`` jobs of ``minions`` minions each, in local_cache's layout (the
    files its prep_jid, save_load and returner write, without their fsyncs:
    100,000 returns through the returner take ~10 minutes here); their jids.
    """
    job_dir = os.path.join(opts["cachedir"], "jobs")
    names = [f"minion-{m:02d}" for m in range(minions)]
    jids = []
    for n in range(jobs):
        jid = f"20261130{n:012d}"
        folder = salt.utils.jid.jid_dir(jid, job_dir, opts["hash_type"])
        os.makedirs(folder)
        with open(os.path.join(folder, "jid"), "w", encoding="utf-8") as handle:
            handle.write(jid)
        load = {
            "jid": jid,
            "fun": "cmd.run",
            "arg": ["uptime"],
            "tgt": "*",
            "tgt_type": "glob",
            "user": "root",
        }
        dump(os.path.join(folder, ".load.p"), load)
        dump(os.path.join(folder, ".minions.p"), names)
        for minion in names:
            os.mkdir(os.path.join(folder, minion))
            ret = {"return": " 12:00:00 up 42 days,  3 users" * 8, "retcode": 0, "success": True}
            dump(os.path.join(folder, minion, "return.p"), ret)
        jids.append(jid)
    return jids


def dump(path, data):
    with open(path, "wb") as handle:
        salt.payload.dump(data, handle)


def timed_round(es, mysqld):
    """One forced round: (its report, this process's CPU s, MariaDB's CPU s, wall s)."""
    before, db_before, wall = cpu(), cpu(mysqld), time.monotonic()
    report = es.catch_up()["last_round"]
    return report, cpu() - before, cpu(mysqld) - db_before, time.monotonic() - wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--minions", type=int, default=10)
    parser.add_argument("--spool", type=int, default=10_000)
    args = parser.parse_args()

    with throwaway_master("es-bench-catch-up-") as (opts, mysqld):
        # Live stores in the spool part are taken as they come (no job cache for them).
        opts["eventstore"] = {"catch_up_after": 0, "verify_returns": False}
        es = load_runner(opts)
        es.init()

        if args.jobs:
            rounds_on_a_big_job_cache(es, opts, mysqld, args)
        spool_replay(opts, args.spool)


@contextlib.contextmanager
def throwaway_master(prefix):
    """
    A throwaway MariaDB and a master config on it with a cachedir of its
    own: ``(opts, the mysqld process)``, both gone after.
    """
    server = mysqlserver.ThrowawayServer()
    root = tempfile.mkdtemp(prefix=prefix)
    try:
        opts = salt.config.master_config(None)
        opts.update(
            cachedir=os.path.join(root, "cache"), **mysql_keys(server, server.create_database())
        )
        yield opts, psutil.Process(server.proc.pid)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def rounds_on_a_big_job_cache(es, opts, mysqld, args):
    """What rounds cost on a job cache of ``args.jobs`` x ``args.minions``."""
    max_jobs = es.lib.config.catch_up_settings(opts).max_jobs
    started = time.monotonic()
    jids = write_job_cache(opts, args.jobs, args.minions)
    say(
        f"job cache: {args.jobs} jobs x {args.minions} minions written in {time.monotonic() - started:.0f} s"
    )

    # Rounds store the whole job cache, max_jobs jobs a round.
    rounds, total_cpu, total_db, total_wall, stored = 0, 0.0, 0.0, 0.0, 0
    while True:
        report, used, db_used, wall = timed_round(es, mysqld)
        rounds += 1
        total_cpu, total_db, total_wall = total_cpu + used, total_db + db_used, total_wall + wall
        stored += report["stored"]["returns"]
        if not report["more to do"]:
            break
    say(
        f"storing: {stored} returns in {rounds} rounds of {max_jobs} jobs: {total_wall:.1f} s,"
        f" {stored / total_wall:.0f} returns/s; CPU {total_cpu:.1f} s eventstore + {total_db:.1f} s MariaDB"
        f" ({1000 * total_cpu / stored:.2f} ms per return); a round {total_wall / rounds:.2f} s"
    )

    # Nothing changed since the last round: the round every interval on a quiet master.
    quiet = [timed_round(es, mysqld) for _ in range(5)]
    say(
        "no-op round, nothing changed: CPU s "
        f"{statistics.median(q[1] for q in quiet):.3f} (MariaDB {statistics.median(q[2] for q in quiet):.3f}),"
        f" wall {statistics.median(q[3] for q in quiet):.3f} s, jobs looked at {quiet[0][0]['jobs changed']}"
    )

    # A busy master: max_jobs jobs changed since the last round, all stored already.
    job_dir = os.path.join(opts["cachedir"], "jobs")
    busy = []
    for _ in range(3):
        now = time.time()
        for jid in jids[-max_jobs:]:
            os.utime(salt.utils.jid.jid_dir(jid, job_dir, "sha256"), (now, now))
        busy.append(timed_round(es, mysqld))
    say(
        f"no-op round, {max_jobs} jobs x {args.minions} minions changed, all stored: CPU s"
        f" {statistics.median(b[1] for b in busy):.3f} (MariaDB {statistics.median(b[2] for b in busy):.3f}),"
        f" wall {statistics.median(b[3] for b in busy):.3f} s"
    )

    # The first round ever on a master whose database holds everything already.
    os.unlink(es.lib.config.catch_up_settings(opts).state_path)
    rounds, total_cpu, total_db = 0, 0.0, 0.0
    while True:
        report, used, db_used, _ = timed_round(es, mysqld)
        rounds += 1
        total_cpu, total_db = total_cpu + used, total_db + db_used
        if not report["more to do"]:
            break
    say(
        f"first rounds ever over the whole job cache, all stored: {rounds} rounds, CPU {total_cpu:.1f} s"
        f" (MariaDB {total_db:.1f} s), {total_cpu / rounds:.3f} s a round"
    )


def spool_replay(opts, rows):
    """
    A long outage's spool written back after a master restart (a fresh copy
    of the runner), by the live stores and by catch-up rounds, and what a
    live store costs meanwhile.
    """
    es = load_runner(opts)
    writer = es._runtime().writer
    for n in range(rows):
        _, data = ret_event(minion=f"spooled-{n % 100:02d}", jid=f"20261201{n:012d}", ret="x" * 200)
        writer.spool.put(es.lib.rows.return_row(data["jid"], data["id"], data))

    def live_store_ms(count=30):
        times = []
        for n in range(count):
            tag, data = ret_event(minion="live", jid=f"20261202{n:012d}_{len(times)}")
            began = time.monotonic()
            es.store_events([{"tag": tag, "data": data}])
            times.append(1000 * (time.monotonic() - began))
        return statistics.median(times), max(times)

    # After a restart, a live store writes back REPLAY_BATCH spooled rows after its own row.
    spooled_p50, spooled_max = live_store_ms()
    left = len(writer.spool.names())
    say(
        f"spool: {rows} rows; a live store writing back {es.lib.writer.REPLAY_BATCH} of them took {spooled_p50:.0f} ms p50,"
        f" {spooled_max:.0f} ms max ({rows - left} written back by 30 live stores)"
    )
    # Catch-up rounds write back the rest, CATCH_UP_REPLAY rows each, one every CATCH_UP_PAUSE s.
    began, used, rounds = time.monotonic(), cpu(), 0
    while writer.spool.names(1):
        es.catch_up()
        rounds += 1
    wall = time.monotonic() - began
    say(
        f"catch-up rounds wrote back the other {left} rows in {rounds} rounds, {wall:.1f} s of work"
        f" ({left / wall:.0f} rows/s, CPU {cpu() - used:.1f} s; the rounds are {es.lib.catchup.CATCH_UP_PAUSE:.0f} s apart)"
    )
    empty_p50, empty_max = live_store_ms()
    say(f"a live store with the spool empty: {empty_p50:.0f} ms p50, {empty_max:.0f} ms max")


if __name__ == "__main__":
    main()
