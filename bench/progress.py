"""
What a progress report costs and how often one comes (issue 19, point 7): a
big prune and a big backfill, each run with progress off and with reports
every 5 s (the default) into a recording ``__jid_event__``, on the same
data; and the reporter's own cost per call.  In process, against a
throwaway MariaDB; the job cache in local_cache's layout.

    make bench-progress                                  # ~5 minutes
    python bench/progress.py --returns 200000 --jobs 2000  # smaller
"""

import argparse
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from catch_up import cpu, say, throwaway_master, write_job_cache  # noqa: E402
from runnerlib import as_runner_job, load_runner  # noqa: E402

OLD = "2020-06-01 00:00:00"
INSERT = (
    "INSERT INTO `salt_returns` (`fun`, `jid`, `return`, `id`, `success`, `full_ret`,"
    " `alter_time`) VALUES ('cmd.run', %s, %s, %s, '1', %s, %s)"
)


def put_old_returns(es, count, minions=10):
    """``count`` returns of 2020 (~250 bytes each), 10 minions a job."""
    ret = '" 12:00:00 up 42 days,  3 users"'
    rows = [
        (
            f"2020010100{n // minions:010d}",
            ret,
            f"minion-{n % minions:02d}",
            f'{{"id": "minion-{n % minions:02d}", "return": {ret}}}',
            OLD,
        )
        for n in range(count)
    ]
    for start in range(0, count, 5000):
        es._store().run(
            lambda cur, chunk=rows[start : start + 5000]: cur.executemany(INSERT, chunk)
        )


def timed(es, mysqld, call, progress):
    """
    ``call(progress)`` as a salt-run job: (its result, wall s, CPU s of this
    process, of MariaDB, the reports and when each came, seconds after the start).
    """
    job = as_runner_job(es)
    came = []
    fire = job.fire_event
    job.fire_event = lambda data, suffix: (came.append(time.monotonic()), fire(data, suffix))
    before, db_before, started = cpu(), cpu(mysqld), time.monotonic()
    result = call(progress)
    wall = time.monotonic() - started
    return (
        result,
        wall,
        cpu() - before,
        cpu(mysqld) - db_before,
        job.progress(),
        [round(t - started, 2) for t in came],
    )


def compare(name, es, mysqld, call, prepare):
    for progress in (False, True):
        prepare()
        result, wall, used, db_used, reports, times = timed(es, mysqld, call, progress)
        say(
            f"{name}, progress={progress}: {wall:.1f} s, CPU {used:.2f} s eventstore +"
            f" {db_used:.2f} s MariaDB; {len(reports)} reports at {times}; result {result}"
        )
        for report in reports[:2] + reports[-1:]:
            say(f"    {report['message']}")


def reporter_costs(es):
    """The reporter's own cost per call: a batch's advance (no report due), and a report."""
    progress = es.lib.progress
    quiet = progress.Progress([].append).task("prune salt_returns", "rows deleted", left=10**6)
    n = 1_000_000
    per_call = timeit.timeit(lambda: quiet.advance(1000), number=n) / n
    say(f"advance() with no report due: {per_call * 1e9:.0f} ns a call (one a batch)")
    due = progress.Progress([].append, interval=0).task("backfill", "jobs done", left=10**6)
    counts = {"jobs read": 10, "returns added": 100}
    per_report = timeit.timeit(lambda: due.advance(1000, counts), number=100_000) / 100_000
    say(f"a report made and handed over: {per_report * 1e6:.1f} us (one every 5 s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--returns", type=int, default=2_000_000)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--minions", type=int, default=10)
    args = parser.parse_args()

    with throwaway_master("es-bench-progress-") as (opts, mysqld):
        es = load_runner(opts)
        es.init()
        reporter_costs(es)

        compare(
            f"prune of {args.returns:,} returns",
            es,
            mysqld,
            lambda progress: es.prune(before="2021-01-01", progress=progress),
            lambda: put_old_returns(es, args.returns),
        )
        started = time.monotonic()
        write_job_cache(opts, args.jobs, args.minions)
        say(
            f"job cache: {args.jobs:,} jobs x {args.minions} minions in {time.monotonic() - started:.0f} s"
        )

        def empty_tables():
            # TRUNCATE, not DELETE: no purge of deleted rows left running into the next run.
            for table in ("jids", "salt_returns"):
                es._store().run(lambda cur, table=table: cur.execute(f"TRUNCATE TABLE `{table}`"))

        compare(
            f"backfill of {args.jobs:,} jobs x {args.minions} minions",
            es,
            mysqld,
            lambda progress: es.backfill(since="2026-11-30", until="2026-12-01", progress=progress),
            empty_tables,
        )


if __name__ == "__main__":
    main()
