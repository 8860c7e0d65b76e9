"""
The master config, read once per loaded runner: which database and how to
reach it (the mysql and pgjsonb returners' own keys), everything under the
``eventstore:`` key, the catch-up settings, and the parsing of the runner's
yes/no and number arguments.  Pure: every function reads only what it is given.
"""

import os
import re
from collections import namedtuple

from saltext.eventstore.rows import ALWAYS_IGNORED

Config = namedtuple(
    "Config",
    "backend mysql sqlite_path ignore_funs verify_returns job_cache_wait spool_dir postgres"
    " event_globs",
)

BACKENDS = ("mysql", "sqlite", "postgres")

MYSQL_DEFAULTS = {
    "host": "salt",
    "user": "salt",
    "pass": "salt",
    "db": "salt",
    "port": 3306,
    "ssl_ca": None,
    "ssl_cert": None,
    "ssl_key": None,
}

#: The pgjsonb returner's keys (``returner.pgjsonb.<key>``) and its defaults.
POSTGRES_DEFAULTS = {
    "host": "localhost",
    "user": "salt",
    "pass": "salt",
    "db": "salt",
    "port": 5432,
    "sslmode": None,
    "sslrootcert": None,
    "sslcert": None,
    "sslkey": None,
    "sslcrl": None,
    "connect_timeout": None,
}


def returner_keys(opts, prefix, defaults, nested=None):
    """
    A returner's connection settings: ``<prefix>.<key>`` flat keys, else
    ``nested[key]``, else ``defaults``; and whether any key was given.  The
    returners' convention: the string ``"None"`` means unset.
    """
    nested = nested if isinstance(nested, dict) else {}
    found, given = dict(defaults), False
    for key in defaults:
        if f"{prefix}.{key}" in opts:
            value, given = opts[f"{prefix}.{key}"], True
        elif key in nested:
            value, given = nested[key], True
        else:
            continue
        found[key] = None if isinstance(value, str) and value.lower() == "none" else value
    return found, given


def postgres_hosts(hosts, default_port):
    """
    libpq's ``host`` and ``port`` for a list of ``host`` or ``host:port``
    servers (``eventstore: postgres_hosts``): ``("a,b", "5432,5433")``.
    libpq tries them in order and, with ``target_session_attrs=read-write``,
    keeps the first that takes writes (the primary after a failover).
    """
    servers = parse_hosts(hosts, default_port, key="postgres_hosts")
    return ",".join(name for name, _ in servers), ",".join(str(port) for _, port in servers)


def ignore_globs(value):
    """
    The globs of ``eventstore:ignore_funs`` (or ``eventstore:events``): a
    list of them, or one.  Only strings: the reactor SLS and the engine read
    the same settings and must mean the same.
    """
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(glob for glob in value if isinstance(glob, str))


def resolve_config(opts):
    """
    Turn the master config into a :py:class:`Config`.  Pure: reads ``opts`` only.
    """
    own = opts.get("eventstore") or {}
    mysql, given = returner_keys(opts, "mysql", MYSQL_DEFAULTS, opts.get("mysql"))
    mysql["port"] = int(mysql["port"])
    if own.get("mysql_hosts"):
        mysql["hosts"], given = parse_hosts(own["mysql_hosts"], mysql["port"]), True
    else:
        mysql["hosts"] = ((mysql["host"], mysql["port"]),)

    postgres, postgres_given = returner_keys(opts, "returner.pgjsonb", POSTGRES_DEFAULTS)
    postgres["port"] = int(postgres["port"])
    if postgres["connect_timeout"] is not None:
        postgres["connect_timeout"] = int(postgres["connect_timeout"])
    if own.get("postgres_hosts"):
        postgres["host"], postgres["port"] = postgres_hosts(own["postgres_hosts"], postgres["port"])

    backend = own.get("backend")
    if not backend and given and postgres_given:
        raise ValueError(
            "eventstore: both mysql.* and returner.pgjsonb.* keys are set:"
            " say which to store into with eventstore: backend: mysql or postgres"
        )
    backend = backend or ("mysql" if given else "postgres" if postgres_given else "sqlite")
    if backend not in BACKENDS:
        raise ValueError(
            f"eventstore: backend must be one of {', '.join(BACKENDS)}, not {backend!r}"
        )
    cachedir = opts.get("cachedir", "/var/cache/salt/master")
    ignore = tuple(ALWAYS_IGNORED) + tuple(
        glob for glob in ignore_globs(own.get("ignore_funs")) if glob not in ALWAYS_IGNORED
    )
    job_cache_readable = job_cache_is_local(opts)
    verify = own.get("verify_returns")
    return Config(
        backend=backend,
        mysql=mysql,
        sqlite_path=own.get("sqlite_path") or os.path.join(cachedir, "eventstore.sqlite3"),
        ignore_funs=ignore,
        verify_returns=job_cache_readable if verify is None else bool(verify),
        job_cache_wait=float(own.get("job_cache_wait", 5)),
        spool_dir=own.get("spool_dir") or os.path.join(cachedir, "eventstore_spool"),
        postgres=postgres,
        # Events other than job results stored in salt_events: none unless asked.
        event_globs=ignore_globs(own.get("events")),
    )


def job_cache_is_local(opts):
    """
    True when the master keeps every return in local_cache's files.
    """
    # Only local_cache can be asked cheaply for one minion's return of one job;
    # with an ext_job_cache the master writes no returns there.
    return bool(
        opts.get("job_cache", True)
        and not opts.get("ext_job_cache")
        and opts.get("master_job_cache", "local_cache") == "local_cache"
    )


def parse_hosts(entries, default_port, key="mysql_hosts"):
    """
    ``(host, port)`` of each entry of a host list (``host``, ``host:port``,
    ``[v6 address]:port``; a list, or one string of them separated by
    commas), in order.  Pure; raises ``ValueError`` naming ``key`` (the
    config key) and a bad entry.
    """
    if isinstance(entries, str):
        entries = entries.split(",")
    if not isinstance(entries, (list, tuple)):
        raise ValueError(f"eventstore: {key} must be a list of host or host:port, not {entries!r}")
    hosts = []
    for entry in entries:
        text = str(entry).strip()
        match = re.fullmatch(r"\[([^\]]+)\](?::(\w+))?|([^:\s]+)(?::(\w+))?|([0-9A-Fa-f:]+)", text)
        if not match:
            raise ValueError(f"eventstore: {key}: {text!r} is not host or host:port")
        host = match.group(1) or match.group(3) or match.group(5)
        port = match.group(2) or match.group(4) or default_port
        if not str(port).isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"eventstore: {key}: {text!r} has no valid port")
        hosts.append((host, int(port)))
    if not hosts:
        raise ValueError(f"eventstore: {key} is empty")
    return tuple(hosts)


def host_name(host):
    """
    ``host:port`` as a URL writes it (an IPv6 address in brackets).
    """
    name, port = host
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


def truthy(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y", "on")
    return bool(value)


def positive_int(value, name):
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ValueError(f"{name} must be a whole number above 0, not {value!r}")
    return number


CatchUpSettings = namedtuple(
    "CatchUpSettings", "enabled interval after max_jobs state_path lock_path"
)


def catch_up_settings(opts):
    """
    The catch-up settings from the master config.  Pure: reads ``opts`` only.
    Off when the job cache is not local_cache: only its folders say cheaply
    what changed.
    """
    own = opts.get("eventstore") or {}
    cachedir = opts.get("cachedir", "/var/cache/salt/master")
    numbers = {}
    for key, default in (("interval", 60), ("after", 60), ("max_jobs", 500)):
        value = own.get(f"catch_up_{key}", default)
        try:
            numbers[key] = float(value)
        except (TypeError, ValueError):
            numbers[key] = -1.0
        if numbers[key] < (0 if key == "after" else 1):
            raise ValueError(f"eventstore: catch_up_{key} must be a number above 0, not {value!r}")
    return CatchUpSettings(
        enabled=truthy(own.get("catch_up", True)) and job_cache_is_local(opts),
        interval=numbers["interval"],
        after=numbers["after"],
        max_jobs=int(numbers["max_jobs"]),
        state_path=os.path.join(cachedir, "eventstore_catch_up.json"),
        lock_path=os.path.join(cachedir, "eventstore_catch_up.lock"),
    )
