"""
eventstore on a throwaway three-node Galera cluster (tests/galeracluster.py):
what a certification conflict costs a store, and how long returns stop
reaching the table when the node in use dies.  In process, no Salt daemons.

    make bench-galera

- conflict: store() of one return on node 1 while another writer (another
  master) commits the same row on node 2 between our INSERT and our COMMIT:
  our COMMIT fails with 1213, the store pauses (CONFLICT_PAUSE with jitter),
  runs again, finds the row: ``duplicate``.  Against a plain store() and a
  store() of a row that is there already.  The other writer's own time is
  taken out.
- failover: one thread stores returns one after another through
  ``mysql_hosts`` (all three nodes, node 1 first); node 1 is SIGKILLed (a
  crash) or SIGTERMed (an orderly stop); the gap is the longest wait between
  two committed rows from the signal on.  A control run keeps the stream on
  node 2 from the start: what the cluster itself stalls commits for while it
  evicts a crashed node.
"""

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import galeracluster  # noqa: E402
from runnerlib import load_runner, ret_event  # noqa: E402

ROUNDS = 30
FAILOVERS = 3


def runner(cluster, database, hosts):
    es = load_runner(
        {
            "mysql.user": "root",
            "mysql.pass": "",
            "mysql.db": database,
            "cachedir": tempfile.mkdtemp(prefix="es-bench-galera-"),
            "eventstore": {"mysql_hosts": hosts, "verify_returns": False},
        }
    )
    made = es.init()
    if "are ready" not in str(made):
        raise RuntimeError(f"eventstore.init: {made}")
    return es


def other_master_writes(node, database, jid, minion):
    with node.connect(database) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO salt_returns (fun, jid, `return`, id, success, full_ret)"
            " VALUES ('test.ping', %s, 'true', %s, '1', '{}')",
            (jid, minion),
        )


def timed(call):
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def conflicts(cluster, database):
    es = runner(cluster, database, cluster.hosts()[:1])
    insert_new = es.lib.store_mysql.MySQLStore._insert_new
    pending = []

    def hooked(self, cur, statement, params):
        added = insert_new(self, cur, statement, params)
        while pending:
            pending.pop()()
        return added

    es.lib.store_mysql.MySQLStore._insert_new = hooked
    cases = {
        "plain store()": [],
        "store() of a row stored already": [],
        "store() meeting a conflict": [],
    }
    other = []  # ms the other writer took, inside the timed store(): not the store's
    verdicts = {case: set() for case in cases}
    for n in range(ROUNDS):
        jid = f"2026113000000000{n:04d}"
        for case in cases:
            minion = {"plain store()": "plain", "store() meeting a conflict": "conflict"}.get(
                case, "plain"
            )
            if case == "store() meeting a conflict":
                pending.append(
                    lambda j=jid: other.append(
                        timed(
                            lambda: other_master_writes(cluster.nodes[1], database, j, "conflict")
                        )[0]
                    )
                )
            ms, verdict = timed(lambda: es.store(*ret_event(minion=minion, jid=jid)))
            if case == "store() meeting a conflict":
                ms -= other[-1]
            cases[case].append(ms)
            verdicts[case].add(verdict)
    print(f"\n{ROUNDS} rounds, CONFLICT_PAUSE {es.lib.store.CONFLICT_PAUSE} s (x0.5-1.5 jitter)\n")
    print("| case | verdicts | ms per store, median | p90 |")
    print("|---|---|---|---|")
    for case, times in cases.items():
        times.sort()
        print(
            f"| {case} | {', '.join(sorted(verdicts[case]))} | {statistics.median(times):.1f} |"
            f" {times[int(len(times) * 0.9)]:.1f} |"
        )


def failover(cluster, database, how, first=0, run=0):
    hosts = cluster.hosts()
    es = runner(cluster, database, hosts[first:] + hosts[:first])
    stored, stop = [], threading.Event()

    def stream():
        n = 0
        while not stop.is_set():
            n += 1
            verdict = es.store(*ret_event(minion=f"run{run}-{n}", jid="20261130000000009999"))
            stored.append((time.monotonic(), verdict))

    thread = threading.Thread(target=stream)
    thread.start()
    time.sleep(1)
    node = cluster.nodes[0]
    signalled = time.monotonic()
    if how == "SIGKILL":
        node.kill()
    else:
        node.pause()
    while not [t for t, _ in stored if t > signalled] and time.monotonic() - signalled < 60:
        time.sleep(0.01)
    time.sleep(1)
    stop.set()
    thread.join()
    # The longest wait between two committed rows from the signal on (a store
    # in flight when the signal came may still commit on node 1).
    times = [signalled] + [t for t, _ in stored if t > signalled]
    gap = max(b - a for a, b in zip(times, times[1:])) if len(times) > 1 else float("nan")
    verdicts = {v for _, v in stored}
    node.rejoin()
    cluster.wait_synced()
    return gap, verdicts


def main():
    cluster = galeracluster.GaleraCluster()
    try:
        database = cluster.nodes[0].create_database()
        conflicts(cluster, database)
        print("\n| node 1 stopped by | longest wait between two committed rows, s | verdicts |")
        print("|---|---|---|")
        runs = 0
        for how, first, label in (
            ("SIGKILL", 0, "SIGKILL (a crash)"),
            ("SIGTERM", 0, "SIGTERM (an orderly stop)"),
            # Control: the stream on node 2 from the start, so no failover at
            # all: what the cluster itself holds commits for.
            ("SIGKILL", 1, "SIGKILL, the stream on node 2 already (no failover)"),
        ):
            gaps, verdicts = [], set()
            for _ in range(FAILOVERS):
                runs += 1
                gap, seen = failover(cluster, database, how, first, runs)
                gaps.append(gap)
                verdicts |= seen
            print(
                f"| {label} | {', '.join(f'{g:.2f}' for g in gaps)} | {', '.join(sorted(verdicts))} |"
            )
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
