"""
What forged return events cost the runner: how long one store() holds a
reactor thread for each kind of forgery (issue 3: a flood of forgeries must
not stall the reactor).  In process, SQLite, the master job cache written by
Salt's own local_cache returner; nothing to set up.

    make bench-forgeries
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import salt.config  # noqa: E402
import salt.loader  # noqa: E402
from runnerlib import JID, load_runner, ret_event  # noqa: E402


def main():
    opts = salt.config.master_config(None)
    opts.update(cachedir=tempfile.mkdtemp(prefix="es-bench-forgeries-"))
    returners = salt.loader.returners(opts, {})
    load = {"jid": JID, "fun": "test.ping", "arg": [], "tgt": "*", "tgt_type": "glob"}
    returners["local_cache.save_load"](JID, load, minions=["web1", "web2"])  # web2 never returns
    es = load_runner(opts)
    es.init()
    wait = es._runtime().config.job_cache_wait
    cases = [
        (
            "jid this master never saw",
            [ret_event(jid=f"2099010100000000{n:04d}") for n in range(50)],
        ),
        ("minion the job did not target", [ret_event(minion=f"victim{n}") for n in range(20)]),
        ("targeted minion not returned yet, first event", [ret_event(minion="web2")]),
        ("the same again", [ret_event(minion="web2") for _ in range(20)]),
    ]
    print(f"job_cache_wait {wait:g} s, UNEXPECTED_WAIT {es.lib.intake.UNEXPECTED_WAIT:g} s\n")
    print("| forged return | events | verdicts | ms per event (median) |")
    print("|---|---|---|---|")
    for label, events in cases:
        seconds, verdicts = [], set()
        for event in events:
            started = time.monotonic()
            verdicts.add(es.store(*event))
            seconds.append(time.monotonic() - started)
        print(
            f"| {label} | {len(events)} | {', '.join(sorted(verdicts))} | "
            f"{statistics.median(seconds) * 1000:.1f} |"
        )


if __name__ == "__main__":
    main()
