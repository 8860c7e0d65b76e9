"""
How long operations say how far they are: the reporter (when it reports,
what it says) on a fake clock, and the runner's choice of where reports go
(this salt-run job's progress events, or nowhere).
"""

import weakref

import pytest
from runnerlib import FakeClock, JidEvent, as_runner_job
from saltext.eventstore import progress


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(progress, "time", fake)
    return fake


@pytest.fixture
def sent():
    return []


def reporter(sent, interval=5.0):
    return progress.Progress(sent.append, interval)


def test_nothing_is_reported_before_the_first_interval(clock, sent):
    task = reporter(sent).task("prune salt_returns", "rows deleted", left=100)
    clock.sleep(4.9)
    task.advance(50)
    assert sent == []


def test_the_first_report_comes_once_the_interval_has_passed(clock, sent):
    task = reporter(sent).task("prune salt_returns", "rows deleted", left=100)
    clock.sleep(5)
    task.advance(50)
    assert len(sent) == 1


def test_reports_come_at_most_once_per_interval(clock, sent):
    task = reporter(sent).task("prune salt_returns", "rows deleted")
    for done in range(1, 101):
        clock.sleep(0.5)  # a batch every half second, 50 s in all
        task.advance(done)
    assert len(sent) == 10


def test_a_report_says_what_is_done_what_is_left_the_rate_and_the_time_to_go(clock, sent):
    task = reporter(sent).task("prune salt_returns", "rows deleted", left=4000)
    clock.sleep(5)
    task.advance(1000)
    assert sent == [
        {
            "message": "prune salt_returns: 1,000 rows deleted, 3,000 left, 200 rows/s,"
            " about 15 s to go",
            "operation": "prune salt_returns",
            "done": 1000,
            "left": 3000,
            "per_second": 200.0,
        }
    ]


def test_a_report_without_a_known_left_says_done_and_rate(clock, sent):
    task = reporter(sent).task("replay", "rows written back")
    clock.sleep(10)
    task.advance(500)
    assert sent[0]["message"] == "replay: 500 rows written back, 50 rows/s"
    assert sent[0]["left"] is None


def test_a_report_adds_the_other_counts_that_are_not_zero(clock, sent):
    task = reporter(sent).task("backfill", "jobs done", left=10)
    clock.sleep(5)
    task.advance(5, {"returns added": 1200, "refused": 0})
    assert sent[0]["message"].endswith("about 5 s to go; 1,200 returns added")


def test_an_untimed_task_reports_no_rate(clock, sent):
    task = reporter(sent).task("migrate", "steps done", left=3, timed=False)
    clock.sleep(5)
    task.advance(1)
    assert sent[0]["message"] == "migrate: 1 steps done, 2 left"
    assert "per_second" not in sent[0]


def test_the_rate_of_a_task_counts_from_its_own_start(clock, sent):
    progress_ = reporter(sent)
    clock.sleep(100)  # the first table took long
    task = progress_.task("prune salt_returns", "rows deleted")
    clock.sleep(2)
    task.advance(200)
    assert sent[0]["per_second"] == 100.0


def test_what_is_left_is_counted_once_at_the_first_report_and_followed_after(clock, sent):
    counts = []

    def count():
        counts.append(1)
        return 900

    task = reporter(sent).task("prune jids", "rows deleted", left=count)
    task.advance(50)
    assert counts == []  # no report due: not counted
    clock.sleep(5)
    task.advance(100)
    clock.sleep(5)
    task.advance(400)
    assert (len(counts), [report["left"] for report in sent]) == (1, [900, 600])


def test_a_short_run_never_counts_what_is_left(clock, sent):
    task = reporter(sent).task("prune jids", "rows deleted", left=lambda: pytest.fail("counted"))
    clock.sleep(1)
    task.advance(10)
    assert sent == []


def test_a_count_that_fails_leaves_what_is_left_unknown(clock, sent):
    def count():
        raise RuntimeError("lost connection")

    task = reporter(sent).task("prune jids", "rows deleted", left=count)
    clock.sleep(5)
    task.advance(10)
    assert sent[0]["left"] is None


def test_a_report_that_cannot_be_sent_fails_nothing_and_stops_the_reports(clock):
    tries = []

    def send(report):
        tries.append(report)
        raise ReferenceError("weakly-referenced object no longer exists")

    task = progress.Progress(send).task("replay", "rows written back")
    for done in range(3):
        clock.sleep(5)
        task.advance(done)
    assert len(tries) == 1


def test_a_reporter_without_a_sender_reports_nothing_and_counts_nothing(clock):
    task = progress.Progress().task("prune jids", "rows deleted", left=lambda: pytest.fail("x"))
    clock.sleep(60)
    task.advance(10)


@pytest.mark.parametrize(
    "value, seconds",
    [(True, 5.0), ("True", 5.0), (2, 2.0), ("0.5", 0.5), (False, None), ("no", None), (0, None)],
)
def test_the_progress_argument_is_seconds_between_reports_or_none(value, seconds):
    assert progress.interval(value) == seconds


@pytest.mark.parametrize("value", ["often", -1, "nan", [5]])
def test_a_progress_argument_that_is_no_interval_is_refused(value):
    with pytest.raises(ValueError, match="progress must be"):
        progress.interval(value)


@pytest.mark.parametrize(
    "seconds, said", [(44.6, "45 s"), (200, "3 min 20 s"), (7500, "2 h 5 min")]
)
def test_a_time_to_go_is_said_in_the_largest_units(seconds, said):
    assert progress.duration(seconds) == said


# Where the runner sends reports.


def reports_through_the_runner(es, setting=True):
    """A report that is due, made through the runner's reporter: what went out."""
    clock = FakeClock()
    es.lib.progress.time = clock
    task = es._reporter(setting).task("prune jids", "rows deleted")
    clock.sleep(60)
    task.advance(10)


def test_a_salt_run_job_reports_as_runner_progress_events(es):
    job = as_runner_job(es)
    reports_through_the_runner(es)
    assert [suffix for suffix, _ in job.fired] == ["progress"]
    assert job.progress()[0]["message"].startswith("prune jids: 10 rows deleted")


def test_the_reactors_calls_report_nothing(es):
    # Its threads share the runner's __jid_event__: a report could go out under another jid.
    job = as_runner_job(es, user="Reactor")
    reports_through_the_runner(es)
    assert job.fired == []


def test_progress_false_reports_nothing(es):
    job = as_runner_job(es)
    reports_through_the_runner(es, setting=False)
    assert job.fired == []


def test_a_call_outside_a_runner_job_reports_nothing_and_does_not_fail(es):
    assert not hasattr(es, "__jid_event__")
    reports_through_the_runner(es)


def test_a_report_on_a_job_that_ended_does_not_fail(es):
    # RunnerClient.low hands a weak proxy; once its job ends it is dead.
    as_runner_job(es)
    event = JidEvent()
    es.__jid_event__ = weakref.proxy(event)
    del event
    reports_through_the_runner(es)


def test_a_long_operation_given_a_bad_progress_argument_says_so(es):
    es.init()
    result = es.prune(days=1, progress="often")
    assert result["retcode"] == 1
    assert "progress must be True, False or seconds" in result["Error"]
