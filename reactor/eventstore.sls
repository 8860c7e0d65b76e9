#!py
"""
eventstore's reactor SLS: hand every job return (``salt/job/<jid>/ret/<minion>``)
and every runner or wheel job's result (``salt/run/<jid>/ret``,
``salt/wheel/<jid>/ret``) seen on the master bus to the eventstore runner,
which checks and stores it; and any other event whose tag matches
``eventstore: events`` (for a reactor line such as ``'salt/beacon/*'``),
which it stores in ``salt_events``.  Events that match no glob, and the other
``salt/run/*`` and ``salt/wheel/*`` events, start no runner job.

Results the runner would ignore start no runner job at all: those of
``saltutil.find_job`` (Salt polls every running job with it), of eventstore's
own runner functions (``salt-run eventstore.query``; the reactor's own
``eventstore.store`` jobs never reach a reactor: it drops events of user
"Reactor"), of the wheel functions that return secrets, and of the
functions in the master config's ``eventstore: ignore_funs``.  A runner job
costs the reactor ~20 ms of CPU whatever the runner does; deciding here costs
a fraction of a millisecond.  Anything not decided here (no function name, an
odd shape) goes to the runner, which keeps the same filter of its own
(``saltext/eventstore/``: ``config.ignore_globs``, ``rows.fun_name``,
``rows.is_ignored``; tests/unit/test_salt_integration.py holds both to the same answers).

Python, not Jinja: the reactor renders its SLS for every event, with no cache;
this template took Jinja ~6 ms to compile each time, Python 0.3 ms.  And the
event reaches the runner as the master decoded it, with no JSON or YAML
round trip that could change or refuse a return (bytes, lone surrogates).

The renderer sets ``tag``, ``data`` and ``__opts__`` (the master config).
"""

import fnmatch

#: The runner's ``rows.ALWAYS_IGNORED`` (tests/unit/test_salt_integration.py
#: holds them equal): the SLS cannot import the runner's modules.
ALWAYS_IGNORED = [
    "saltutil.find_job",
    "runner.eventstore.*",
    "wheel.key.gen",
    "wheel.key.gen_accept",
    "wheel.config.values",
]


#: Job results: stored as returns or not at all, never as events (rows.JOB_TAGS).
JOB_TAGS = ("salt/job/*", "salt/run/*", "salt/wheel/*")

#: The runner and wheel job results the runner stores as returns.
RESULT_TAGS = ("salt/run/*/ret", "salt/wheel/*/ret")


def _globs(opts, key):
    own = opts.get("eventstore")
    globs = own.get(key) if isinstance(own, dict) else None
    if isinstance(globs, str):
        globs = [globs]
    if not isinstance(globs, (list, tuple)):
        globs = []
    return [glob for glob in globs if isinstance(glob, str)]


def _matches(text, globs):
    return any(fnmatch.fnmatchcase(text, glob) for glob in globs)


def _fun_name(load):
    fun = load.get("fun")
    # A compound job (salt '*' test.ping,test.version) is matched by its joined names.
    if isinstance(fun, (list, tuple)) and fun and all(isinstance(name, str) for name in fun):
        return ",".join(fun)
    return fun if isinstance(fun, str) else ""


def _store():
    return {"eventstore_store": {"runner.eventstore.store": [{"args": [{"tag": tag}, {"data": data}]}]}}


def run():
    if not (tag.startswith("salt/job/") or _matches(tag, RESULT_TAGS)):
        if _matches(tag, JOB_TAGS) or not _matches(tag, _globs(__opts__, "events")):
            return {}
        return _store()
    load = data if isinstance(data, dict) else {}
    # Older paths nest a return load one level down.
    if "/ret/" in tag and "return" not in load and isinstance(load.get("data"), dict):
        load = load["data"]
    fun = _fun_name(load)
    if fun and _matches(fun, ALWAYS_IGNORED + _globs(__opts__, "ignore_funs")):
        return {}
    return _store()
