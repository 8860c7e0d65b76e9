"""
Event to row: the pure rules that say whether a job event is one eventstore
stores and what row it becomes, in the mysql returner's layout.

Owns the row types (``ReturnRow`` for ``salt_returns``, ``LoadRow`` for
``jids``, ``EventRow`` for ``salt_events``, ``DeadLetter`` for
``eventstore_dead_letters``), the checks a return must pass (jid, minion id,
function name), which other events are stored (``eventstore: events``), the
JSON the returner writes, and :py:class:`Refused`, the reason an event is
not stored.  Reads nothing but its arguments; imports nothing of eventstore's.
"""

import fnmatch
import hashlib
import json
import math
import re
from collections import namedtuple

#: Never stored: Salt polls running jobs with ``saltutil.find_job`` every few
#: seconds; eventstore's own runner jobs (the reactor's ``eventstore.store``, one
#: per stored return) would store a row per row, and loop; ``key.gen`` and
#: ``key.gen_accept`` return a private key, ``config.values`` the master config
#: with its passwords (eventstore's own among them).
ALWAYS_IGNORED = (
    "saltutil.find_job",
    "runner.eventstore.*",
    "wheel.key.gen",
    "wheel.key.gen_accept",
    "wheel.config.values",
)

#: The width of ``salt_returns.fun`` in the mysql returner's layout.
FUN_WIDTH = 50

#: What ``mediumtext`` holds, in bytes.
TEXT_BYTES = 16 * 1024 * 1024 - 1

JID_PATTERN = re.compile(r"\d{20}(?:_[0-9A-Za-z]+)?")

#: What the event bus puts in place of a value of an event over max_event_size.
TRIMMED = "VALUE_TRIMMED"

#: What became of a row handed to the writer.
VERDICTS = ("stored", "duplicate", "spooled", "dead-lettered")

ReturnRow = namedtuple("ReturnRow", "fun jid ret id success full_ret")
LoadRow = namedtuple("LoadRow", "jid load")
DeadLetter = namedtuple("DeadLetter", "jid id fun reason data")
#: A ``salt_events`` row as the mysql returner's ``event_return`` writes it,
#: with ``alter_time`` (UTC, ``YYYY-MM-DD HH:MM:SS``) set when the event came
#: in, so an event written back from the spool keeps its time.
EventRow = namedtuple("EventRow", "tag data master_id alter_time")

#: Each row type's table and columns, in the order of its fields.
TABLES = {
    ReturnRow: ("salt_returns", ("fun", "jid", "return", "id", "success", "full_ret")),
    LoadRow: ("jids", ("jid", "load")),
    DeadLetter: ("eventstore_dead_letters", ("jid", "id", "fun", "reason", "data")),
    EventRow: ("salt_events", ("tag", "data", "master_id", "alter_time")),
}
ROW_TYPES = {table: row_type for row_type, (table, _) in TABLES.items()}

#: The master's own jobs, by the client that runs them (the prefix of their
#: function, ``runner.state.orchestrate``), and where each announces its result.
MASTER_JOB_TAGS = {"runner": "salt/run/", "wheel": "salt/wheel/"}


class Refused(ValueError):
    """
    An event that looks like ours but cannot be stored as it is; the message is
    the reason, logged with the event's tag.
    """


def parse_tag(tag):
    """
    Split a job event tag.  Returns ``("new", jid, None)``,
    ``("ret", jid, minion)``, ``("runner", jid, None)`` for a runner job's
    result (``salt/run/<jid>/ret``), ``("wheel", jid, None)`` for a wheel
    job's, or ``None`` for any other tag.
    """
    if not isinstance(tag, str):
        return None
    for kind, prefix in MASTER_JOB_TAGS.items():
        if tag.startswith(prefix) and tag.endswith("/ret"):
            return (kind, tag[len(prefix) : -len("/ret")], None)
    if not tag.startswith("salt/job/"):
        return None
    rest = tag[len("salt/job/") :]
    if rest.endswith("/new"):
        return ("new", rest[: -len("/new")], None)
    # From the right: a forged jid may hold slashes, a minion id may not.
    jid, ret, minion = rest.rpartition("/ret/")
    if ret:
        return ("ret", jid, minion)
    return None


def to_json(obj):
    """
    JSON as the mysql returner writes it (``salt.utils.json.dumps``: UTF-8, not
    ASCII escapes), but always valid JSON that the database can hold: text that
    cannot be encoded as UTF-8 (lone surrogates) is written with ASCII escapes,
    and NaN and infinities, which JSON lacks, as the strings ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"``.  Raises :py:class:`Refused` for data
    nested too deeply to write.
    """
    try:
        try:
            text = json.dumps(obj, ensure_ascii=False, allow_nan=False, default=json_default)
        except ValueError:
            obj = finite_json(obj)
            text = json.dumps(obj, ensure_ascii=False, allow_nan=False, default=json_default)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(obj, ensure_ascii=True, allow_nan=False, default=json_default)
    except RecursionError:
        raise Refused("the data is nested too deeply to store") from None
    return text


def finite_json(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {key: finite_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(value) for value in obj]
    return obj


def json_default(obj):
    # Event data is msgpack: bytes and sets are all that JSON lacks.
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("utf-8", "surrogateescape")
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    return str(obj)


def is_ignored(fun, ignore_funs):
    """
    True when ``fun`` matches one of the shell globs in ``ignore_funs``.
    """
    return any(fnmatch.fnmatchcase(fun, glob) for glob in ignore_funs)


def check_minion_id(minion):
    # Salt's own rules for a minion id (salt.utils.verify.valid_id), and what a
    # varchar(255) utf8mb4 column can hold.
    valid = (
        0 < len(minion) <= 255
        and minion not in (".", "..")
        and minion.isprintable()
        and not any(char in minion for char in "/\\")
    )
    try:
        minion.encode("utf-8")
    except UnicodeEncodeError:
        valid = False
    if not valid:
        raise Refused(f"{minion[:80]!r} is not a minion id")


def fun_name(fun):
    # A compound job (salt '*' test.ping,test.version) returns a list of functions.
    if isinstance(fun, (list, tuple)) and fun and all(isinstance(f, str) for f in fun):
        return ",".join(fun)
    if isinstance(fun, str) and fun:
        return fun
    raise Refused("the event has no function name")


def check_jid(tag_jid, data):
    if len(tag_jid) > 255 or not JID_PATTERN.fullmatch(tag_jid):
        raise Refused(f"the tag's jid {tag_jid[:80]!r} is not a job id")
    if "jid" in data and str(data["jid"]) != tag_jid:
        raise Refused(f"data.jid {str(data['jid'])[:40]!r} disagrees with the tag")


def unwrap(data):
    if not isinstance(data, dict):
        raise Refused("the event data is not a mapping")
    if "return" not in data and isinstance(data.get("data"), dict):
        return data["data"]  # older paths nest the return load one level down
    return data


def return_fun(jid, minion, data, ignore_funs=ALWAYS_IGNORED):
    """
    The function name of a ``salt/job/<jid>/ret/<minion>`` event whose data
    (unwrapped) can be a minion's return, or ``None`` when its function is
    ignored.  Raises :py:class:`Refused` otherwise.  Cheap: nothing is serialised.
    """
    check_jid(jid, data)
    check_minion_id(minion)
    if data.get("id") != minion:
        raise Refused(f"data.id {str(data.get('id'))[:80]!r} disagrees with the tag")
    if "return" not in data:
        raise Refused("the event has no return")
    fun = fun_name(data.get("fun"))
    return None if is_ignored(fun, ignore_funs) else fun


def return_row(jid, minion, data, ignore_funs=ALWAYS_IGNORED):
    """
    The ``salt_returns`` row for a ``salt/job/<jid>/ret/<minion>`` event, as
    the mysql returner would write it, or ``None`` when its function is ignored.
    Raises :py:class:`Refused` for an event that cannot be a minion's return.
    """
    data = unwrap(data)
    fun = return_fun(jid, minion, data, ignore_funs)
    return None if fun is None else result_row(fun, jid, minion, data)


def result_row(fun, jid, returner_id, data):
    """
    The ``salt_returns`` row of ``data``, a checked result of function
    ``fun`` that ``returner_id`` (a minion, or the master for its own jobs)
    gave for job ``jid``.
    """
    ret = to_json(data["return"])
    return ReturnRow(
        # The column is varchar(50); the whole name stays in full_ret.
        fun=fun[:FUN_WIDTH],
        jid=jid,
        ret=ret,
        id=returner_id,
        # The returner writes the bool, which the driver turns into '1'/'0'.
        success="1" if data.get("success", False) == 1 else "0",
        full_ret=with_json_return(data, ret),
    )


def master_job_fun(kind, jid, data, ignore_funs=ALWAYS_IGNORED):
    """
    The function (``runner.<name>``, ``wheel.<name>``) of the result of a
    master's ``kind`` job (``runner`` or ``wheel``), or ``None`` when it is
    ignored or no job ran (``salt-run`` of a function that does not exist:
    Salt fires its error with the bare name, and keeps no job of it).
    Raises :py:class:`Refused` for an event that cannot be such a result.
    """
    if not isinstance(data, dict):
        raise Refused("the event data is not a mapping")
    # A minion can send any tag (event.send): the master wraps what it sends so.
    if data.get("cmd") == "_minion_event":
        raise Refused(f"minion {str(data.get('id'))[:80]!r} sent it, not the master")
    check_jid(jid, data)
    if "return" not in data:
        raise Refused("the event has no return")
    fun = fun_name(data.get("fun"))
    if not fun.startswith(f"{kind}."):
        return None
    return None if is_ignored(fun, ignore_funs) else fun


def master_job_row(kind, jid, master_id, data, ignore_funs=ALWAYS_IGNORED):
    """
    The ``salt_returns`` row of the result of a master's ``kind`` job, keyed
    by ``master_id``, the id under which the master job cache keeps it; or
    ``None`` when it is ignored.  ``full_ret`` is the event data, whose
    ``success`` Salt sets for the whole job (an orchestration with a failed
    step: ``False``).  Raises :py:class:`Refused` as
    :py:func:`master_job_fun` does.
    """
    fun = master_job_fun(kind, jid, data, ignore_funs)
    if fun is None:
        return None
    check_minion_id(master_id)
    return result_row(fun, jid, master_id, data)


def master_job_load(jid, master_id, data):
    """
    The ``jids`` row of a master's job from its result ``data`` (the
    event's, or the copy in the master job cache's load, under ``return``):
    the load the master job cache keeps of it (id and target the master's
    id, the function, the user) with the arguments as ``arg``, where readers
    of a job's load look for them, and as ``fun_args``, as the job's events
    name them; no minion was targeted.  Raises :py:class:`Refused` for data
    that is not a job's result.
    """
    if not isinstance(data, dict):
        raise Refused("the job's load holds no result data")
    args = data.get("fun_args")
    args = args if isinstance(args, list) else []
    load = {
        "id": master_id,
        "tgt": master_id,
        "fun": data.get("fun"),
        "arg": args,
        "fun_args": args,
        "minions": [],
    }
    if "user" in data:
        load["user"] = data["user"]
    return load_row(jid, dict(load, jid=jid))


def with_master_job_cache(data, cached):
    """
    The result event ``data`` of a master's job with what the master job
    cache holds of it: ``{"return": <the job's whole result data>}`` under
    the master's id (local_cache keeps only the top-level ``return``), whose
    values replace the event's; the event's ``_stamp`` (the job's end) stays.
    Raises :py:class:`Refused` when the cache holds no job result or one of
    another function.
    """
    job = cached.get("return") if isinstance(cached, dict) else None
    if not isinstance(job, dict) or "return" not in job:
        raise Refused("the master job cache holds no runner or wheel result for it")
    if job.get("fun") != data.get("fun"):
        raise Refused(f"the event's function disagrees with the job's ({str(job.get('fun'))[:50]})")
    merged = dict(data)
    merged.update((key, value) for key, value in job.items() if key != "_stamp")
    return merged


def with_json_return(data, ret):
    """
    ``data`` as JSON, with ``ret``, its return already as JSON, put in last:
    the return, most of a big event, is serialised once, not twice.
    """
    rest = to_json({key: value for key, value in data.items() if key != "return"})
    return f'{rest[:-1]}{", " if len(rest) > 2 else ""}"return": {ret}}}'


def load_row(jid, data):
    """
    The ``jids`` row for a ``salt/job/<jid>/new`` event: the job's load as JSON.
    Raises :py:class:`Refused` for an event that cannot be a job's load.
    """
    if not isinstance(data, dict):
        raise Refused("the event data is not a mapping")
    check_jid(jid, data)
    fun_name(data.get("fun"))
    return LoadRow(jid=jid, load=to_json(data))


#: What a return load holds that is not the job's: ``jids`` keeps the job,
#: ``salt_returns`` the return.
RETURN_ONLY_KEYS = ("return", "retcode", "success", "out")


def job_load(jid, load):
    """
    The ``jids`` row for a job's load as the master job cache keeps it:
    ``Minions`` (local_cache's name) becomes the events' ``minions``, and a
    job a minion started itself, whose load is its return's, is kept
    without the return.
    """
    load = {key: value for key, value in load.items() if key not in RETURN_ONLY_KEYS}
    load["jid"] = jid
    if "Minions" in load:
        load["minions"] = sorted(load.pop("Minions"))
    return load_row(jid, load)


def is_trimmed(data):
    """
    True when the event bus cut a value of this return (``max_event_size``).
    """
    ret = data.get("return")
    if ret == TRIMMED:
        return True
    return isinstance(ret, dict) and any(value == TRIMMED for value in ret.values())


def with_job_cache(data, cached_ret, job_fun=None):
    """
    The return event ``data`` with what the master's job cache holds for it:
    its return, retcode, success and outputter replace the event's.  Raises
    :py:class:`Refused` when the event names another function than the job
    (``job_fun``, when known).
    """
    if job_fun is not None and job_fun != data.get("fun"):
        raise Refused(f"the event's function disagrees with the job's ({str(job_fun)[:50]})")
    # The event's outputter stays when the cache has none (yet): out.p is
    # written after return.p, and waited for only when the event names one.
    merged = {
        key: value for key, value in data.items() if key not in ("return", "retcode", "success")
    }
    merged.update(cached_ret)
    return merged


def oversize(row):
    """
    Why ``row`` cannot go into its table as it is (a value bigger than
    ``mediumtext``, a tag longer than ``salt_events.tag``), or ``None``.
    """
    if isinstance(row, DeadLetter):
        return None  # longtext
    if isinstance(row, EventRow) and len(row.tag) > TAG_WIDTH:
        return (
            f"the tag is {len(row.tag)} characters, more than salt_events.tag holds ({TAG_WIDTH})"
        )
    for name, value in zip(row._fields, row):
        if isinstance(value, str) and not fits(value, TEXT_BYTES):
            size = len(value.encode("utf-8"))
            return f"{name} is {size} bytes, more than a mediumtext column holds"
    return None


def fits(text, limit):
    # Counting bytes means encoding: only when the text may be near the limit.
    return len(text) * 4 <= limit or len(text.encode("utf-8")) <= limit


def dead_letter(row, reason):
    """
    The ``eventstore_dead_letters`` row that keeps ``row`` whole, with why it
    could not be stored.
    """
    if isinstance(row, DeadLetter):
        return row
    if isinstance(row, ReturnRow):
        return DeadLetter(row.jid, row.id, row.fun, reason[:1000], row.full_ret)
    if isinstance(row, EventRow):
        return event_dead_letter(row, reason)
    return DeadLetter(row.jid, "", "", reason[:1000], row.load)


# ---------------------------------------------------------------------------
# Events other than job results: ``salt_events``, as event_return fills it.
# ---------------------------------------------------------------------------

#: The width of ``salt_events.tag``.
TAG_WIDTH = 255

#: Tags whose results are jobs' (``salt_returns`` and ``jids`` keep them):
#: never stored as events, whatever ``eventstore: events`` says.  They also
#: carry what must not be copied around: pillar in job arguments, the
#: private key of a ``key.gen`` wheel job.
JOB_TAGS = ("salt/job/*", "salt/run/*", "salt/wheel/*")

#: What a dead letter of an event starts its jid with (the rest is a hash):
#: the dead-letter table is keyed by (jid, id).
EVENT_LETTER_PREFIX = "event-"


def is_stored_event(tag, globs):
    """
    True when an event tagged ``tag`` goes to ``salt_events``: it matches one
    of the shell globs ``globs`` (``eventstore: events``) and is no job's result.
    """
    if not isinstance(tag, str) or not globs:
        return False
    if any(fnmatch.fnmatchcase(tag, glob) for glob in JOB_TAGS):
        return False
    return any(fnmatch.fnmatchcase(tag, glob) for glob in globs)


def event_sender(data):
    """
    Who sent an event, as Salt names it: ``data.id`` (a minion's event, a
    beacon's, ``salt/auth``), else ``""``.  Not verified: a minion may put
    any tag on its events, but not another minion's id (the master sets it).
    """
    sender = data.get("id") if isinstance(data, dict) else None
    return sender if isinstance(sender, str) else ""


def event_row(tag, data, master_id, now):
    """
    The ``salt_events`` row of an event as the mysql returner's
    ``event_return`` writes it (``data`` as JSON, ``master_id`` the master's
    id), stored at ``now`` (an aware UTC datetime).  Raises
    :py:class:`Refused` for a tag that is no text or data that cannot be
    written as JSON at all.
    """
    if not isinstance(tag, str) or not tag:
        raise Refused("the event has no tag")
    try:
        tag.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused("the tag is not valid UTF-8 (a lone surrogate)") from None
    return EventRow(
        tag=tag,
        data=to_json(data),
        master_id=str(master_id),
        alter_time=now.strftime("%Y-%m-%d %H:%M:%S"),
    )


def event_dead_letter(row, reason):
    """
    The dead letter that keeps an event row whole: the row as JSON, keyed by
    a hash of it (the same event dead-lettered twice is one letter) and its sender.
    """
    whole = (
        f'{{"tag": {to_json(row.tag)}, "master_id": {to_json(row.master_id)},'
        f' "alter_time": {to_json(row.alter_time)}, "data": {row.data}}}'
    )
    digest = hashlib.sha256(whole.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    try:
        sender = event_sender(json.loads(row.data))
    except ValueError:
        sender = ""
    # fun holds the tag's start, readable: no NUL (PostgreSQL text refuses it).
    return DeadLetter(
        EVENT_LETTER_PREFIX + digest,
        sender[:255],
        row.tag[:FUN_WIDTH].replace("\0", "?"),
        reason[:1000],
        whole,
    )
