"""
Time windows of the read-back functions: what people type for ``since``,
``until`` and ``before`` (dates, ISO 8601, jids, ages such as ``2h``), and
the jid range that selects the jobs in a window (jids sort by start time, so
a window is a range scan on the jid index).  Pure.
"""

import datetime
import re

from saltext.eventstore.rows import JID_PATTERN

UTC = datetime.timezone.utc
RELATIVE_TIME = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
TIME_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
TIME_FORMS = (
    "2026-11-26, '2026-11-26 12:00', ISO 8601 (2026-11-26T12:00:00+01:00), a jid,"
    " or an age: 30m, 2h, 3d, 1w"
)


def utc_now():
    return datetime.datetime.now(UTC)


def parse_time(value, now):
    """
    The moment ``value`` names, as an aware UTC datetime.  Accepts what people
    type: a date (``2026-11-26``, midnight), a date and time (``2026-11-26
    12:00``), ISO 8601 with or without an offset (``Z`` too), a jid (its start
    time), or an age meaning "ago": ``45s``, ``30m``, ``2h``, ``3d``, ``1w``.
    Times without an offset are UTC, like jids.  ``salt-run`` hands a jid over
    as an int and YAML may hand dates over as ``date``/``datetime``: both work.
    Raises ``ValueError`` naming the accepted forms.
    """
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, datetime.date):
        moment = datetime.datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        relative = RELATIVE_TIME.fullmatch(text)
        if relative:
            amount, unit = relative.groups()
            return now - datetime.timedelta(**{TIME_UNITS[unit.lower()]: int(amount)})
        try:
            if JID_PATTERN.fullmatch(text):
                moment = datetime.datetime.strptime(text[:20], "%Y%m%d%H%M%S%f")
            else:
                if text[-1:] in ("Z", "z"):
                    text = text[:-1] + "+00:00"
                moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a time; give {TIME_FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def time_to_jid(moment):
    """
    The 20-digit jid a job started at ``moment`` (an aware datetime) would get.
    """
    return f"{moment.astimezone(UTC):%Y%m%d%H%M%S%f}"


def jid_range(since=None, until=None, before=None, now=None):
    """
    ``(low, high)`` jid bounds for a time window, each ``None`` when open:
    jobs with ``low <= jid < high``.  ``since`` is inclusive, ``until``
    exclusive, ``before`` a jid (a page cursor: strictly older jobs).  Jids sort
    by start time, so the window is a range scan on the jid index.
    """

    def bound(name, value):
        try:
            return time_to_jid(parse_time(value, now))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None

    low = bound("since", since) if since is not None else None
    highs = [bound("until", until)] if until is not None else []
    if before is not None:
        before = str(before)
        if not JID_PATTERN.fullmatch(before):
            raise ValueError(f"before={before!r} is not a jid (a page cursor from 'next')")
        highs.append(before)
    return low, (min(highs) if highs else None)


def jid_range_where(low, high):
    """
    SQL conditions and parameters for a :py:func:`jid_range` on a ``jid`` column.
    """
    where, params = [], []
    if low is not None:
        where.append("`jid` >= %s")
        params.append(low)
    if high is not None:
        where.append("`jid` < %s")
        params.append(high)
    return where, params
