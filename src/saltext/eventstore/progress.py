"""
How far a long operation is (``backfill``, ``prune``, ``migrate``,
``replay``): a :py:class:`Progress` reporter, handed by the runner to the
modules that loop, says what is done, what is left and the rate, every
``interval`` seconds at most and never before the first ``interval`` has
passed, so a short run says nothing.  Where the reports go is the runner's
business (Salt's runner progress events, which ``salt-run`` prints as they
come); this module knows nothing of Salt.  A report that cannot be sent
never fails the operation.
"""

import logging
import time

log = logging.getLogger(__name__)

#: Seconds before the first report and between two reports, unless the call
#: says otherwise (``progress=``).  Salt's own runners report as they go.
INTERVAL = 5.0


def interval(value):
    """
    Seconds between reports from a runner's ``progress`` argument: a number
    of seconds, ``True`` for :py:data:`INTERVAL`; ``False``, ``0`` or
    ``None``: no reports (``None`` is returned).  Raises ``ValueError``.
    """
    if isinstance(value, str):
        value = {"true": True, "yes": True, "on": True, "false": False, "no": False}.get(
            value.strip().lower(), value
        )
    if value is None or value is False:
        return None
    if value is True:
        return INTERVAL
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0:  # also NaN
        raise ValueError(f"progress must be True, False or seconds between reports, not {value!r}")
    return seconds or None


def duration(seconds):
    """``45 s``, ``3 min 20 s``, ``2 h 5 min``: a time to go, for people.  Pure."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def describe(operation, unit, done, left, seconds, timed=True, also=None):
    """
    The report of ``operation`` after ``seconds``: ``done`` ``unit`` done
    (``unit`` says how, ``rows deleted``), ``left`` (``None``: not known),
    the rate and the time to go when ``timed``, and the counts in ``also``
    that are not 0.
    A mapping Salt's outputters print: its ``message`` for people, the
    figures for programs.  Pure.
    """
    noun = unit.split()[0]
    parts = [f"{operation}: {done:,} {unit}"]
    if left is not None:
        parts.append(f"{left:,} left")
    rate = done / seconds if seconds > 0 else 0.0
    if timed and rate:
        parts.append(f"{rate:,.0f} {noun}/s")
        if left is not None:
            parts.append(f"about {duration(left / rate)} to go")
    message = ", ".join(parts)
    shown = [f"{count:,} {what}" for what, count in (also or {}).items() if count]
    if shown:
        message += "; " + ", ".join(shown)
    report = {"message": message, "operation": operation, "done": done, "left": left}
    if timed:
        report["per_second"] = round(rate, 1)
    return report


class Progress:
    """
    Reports of one long operation, through ``send`` (a callable taking the
    report), at most every ``interval`` seconds, the first after
    ``interval``.  Without ``send`` it reports nothing and costs one
    comparison per :py:meth:`Task.advance`.
    """

    def __init__(self, send=None, interval=INTERVAL):  # pylint: disable=redefined-outer-name
        self._send = send
        self.interval = interval
        self._due = time.monotonic() + interval
        self.sent = 0

    def task(self, operation, unit, left=None, timed=True):
        """
        A part of the operation whose count starts at 0 now: ``operation``
        names it, ``unit`` says what is counted and how (``rows deleted``).
        ``left``: how many units are to do, or a function that counts them,
        called only when the first report of this task is due (so a short
        run never pays for the count).  ``timed``: show the rate and the time
        to go (not for steps of unequal length).
        """
        return Task(self, operation, unit, left, timed)

    def _report(self, task, done, also):
        if self._send is None:
            return
        now = time.monotonic()
        if now < self._due:
            return
        self._due = now + self.interval
        try:
            self._send(task.report(done, now, also))
            self.sent += 1
        except Exception as exc:  # pylint: disable=broad-except
            # The operation matters, its reports do not: no more of them.
            log.debug("eventstore: %s: progress report not sent, no more: %s", task.operation, exc)
            self._send = None


class Task:
    """One counted part of an operation: see :py:meth:`Progress.task`."""

    def __init__(self, progress, operation, unit, left, timed):
        self._progress = progress
        self.operation, self.unit, self.timed = operation, unit, timed
        self.started = time.monotonic()
        # (done when counted, left then): what is left now follows from it.
        self._counted = None if callable(left) else (0, left)
        self._count = left if callable(left) else None

    def advance(self, done, also=None):
        """``done`` units are done so far; ``also``: other counts to show (``{"returns added": 12}``)."""
        self._progress._report(self, done, also)  # pylint: disable=protected-access

    def report(self, done, now, also=None):
        """What :py:func:`describe` says of this task at ``now``."""
        seconds = now - self.started
        return describe(self.operation, self.unit, done, self.left(done), seconds, self.timed, also)

    def left(self, done):
        """Units left once ``done`` are done, counted at the first report when so asked."""
        if self._counted is None:
            try:
                self._counted = (done, self._count())
            except Exception as exc:  # pylint: disable=broad-except
                log.debug("eventstore: %s: could not count what is left: %s", self.operation, exc)
                self._counted = (done, None)
        counted_at, left_then = self._counted
        if left_then is None:
            return None
        return max(left_then - (done - counted_at), 0)
