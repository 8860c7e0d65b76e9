"""
Load the runner module straight from the checkout, the way Salt's loader would
hand it its globals, for tests that call its functions directly.
"""

import importlib.util
import itertools
import pathlib
import shutil
import sys
import time
import types

REPO = pathlib.Path(__file__).resolve().parent.parent
RUNNER_PATH = REPO / "_runners" / "eventstore.py"
REACTOR_SLS = REPO / "reactor" / "eventstore.sls"
#: The package's modules (src/saltext/eventstore), for tests of their pure rules.
SRC = REPO / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

#: The runner and the modules of eventstore's package it imports.
LIBRARY = "saltext.eventstore"

_counter = itertools.count()


def copy_synced_install(runners_dir):
    """
    Lay out what the README's synced install copies into a ``file_roots``
    ``_runners`` folder: the runner, and beside it the package it imports
    (``src/saltext`` as ``_runners/saltext``).
    """
    runners_dir = pathlib.Path(runners_dir)
    runners_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(RUNNER_PATH, runners_dir / "eventstore.py")
    shutil.copytree(
        SRC / "saltext",
        runners_dir / "saltext",
        ignore=shutil.ignore_patterns("__pycache__"),
        dirs_exist_ok=True,
    )
    return runners_dir / "eventstore.py"


def load_runner(opts):
    """
    A fresh copy of ``_runners/eventstore.py`` (its own module state) with
    ``__opts__`` and an empty ``__context__``.  As under Salt's loader, it
    imports eventstore's modules afresh: they are its ``lib`` attribute here
    (``es.lib.writer``), for tests that look inside or set a constant.
    """
    spec = importlib.util.spec_from_file_location(f"eventstore_{next(_counter)}", RUNNER_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.__opts__ = opts
    module.__context__ = {}
    module.lib = types.SimpleNamespace(
        **{
            name[len(LIBRARY) + 1 :]: loaded
            for name, loaded in sys.modules.items()
            if name.startswith(LIBRARY + ".")
        }
    )
    return module


class FakeClock:
    """
    Stands in for the ``time`` module of one loaded runner: ``monotonic()``
    moves only when the runner sleeps, and its sleeps take no time.  So a
    test says how long the runner waited, exactly, and never races the clock.
    """

    def __init__(self):
        self.now = 1000.0
        #: Seconds each reading moves the clock on: work that takes time.
        self.tick = 0.0

    def monotonic(self):
        self.now += self.tick
        return self.now

    def sleep(self, seconds):
        self.now += seconds

    def __getattr__(self, name):
        return getattr(time, name)


def fake_clock(es):
    """
    Give the loaded runner ``es`` a :py:class:`FakeClock`: every module of
    its load that reads the clock gets it.  Returns it.
    """
    clock = getattr(es.lib, "clock", None)
    if clock is None:
        clock = FakeClock()
        for module in vars(es.lib).values():
            if getattr(module, "time", None) is time:
                module.time = clock
        es.lib.clock = clock
    return clock


class JidEvent:
    """
    Stands in for the ``__jid_event__`` Salt's ``RunnerClient.low`` gives a
    runner job (salt-run): records what the runner fires under the job's tag.
    """

    def __init__(self):
        self.fired = []

    def fire_event(self, data, suffix):
        self.fired.append((suffix, data))

    def progress(self):
        """The progress reports fired, oldest first."""
        return [data for suffix, data in self.fired if suffix == "progress"]


def as_runner_job(es, user="root"):
    """
    Give the loaded runner ``es`` the globals ``RunnerClient.low`` gives a
    job of ``user`` (``Reactor`` for the reactor's).  Returns its
    :py:class:`JidEvent`.
    """
    es.__jid_event__ = JidEvent()
    es.__user__ = user
    return es.__jid_event__


def returner_keys(prefix, server, database, user=None, password=None):
    """
    A returner's ``<prefix>.*`` master config keys for ``database`` on
    ``server``, as ``server``'s user unless told otherwise.
    """
    return {
        f"{prefix}.host": server.host,
        f"{prefix}.port": int(server.port),
        f"{prefix}.user": server.user if user is None else user,
        f"{prefix}.pass": server.password if password is None else password,
        f"{prefix}.db": database,
    }


def mysql_keys(server, database, user=None, password=None):
    """
    The ``mysql.*`` master config keys for ``database`` on ``server`` (a
    tests.mysqlserver server).
    """
    return returner_keys("mysql", server, database, user, password)


def pgjsonb_keys(server, database, user=None, password=None):
    """
    The pgjsonb returner's ``returner.pgjsonb.*`` master config keys for
    ``database`` on ``server`` (a tests.pgserver server).
    """
    return returner_keys("returner.pgjsonb", server, database, user, password)


JID = "20261126120000000000"

# The mysql returner's documented schema (saltext-mysql's returners/mysql.py,
# Salt's salt/returners/mysql.py before it), in a utf8 database as documented.
RETURNER_DDL = (
    """CREATE TABLE `jids` (
  `jid` varchar(255) NOT NULL,
  `load` mediumtext NOT NULL,
  UNIQUE KEY `jid` (`jid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8""",
    """CREATE TABLE `salt_returns` (
  `fun` varchar(50) NOT NULL,
  `jid` varchar(255) NOT NULL,
  `return` mediumtext NOT NULL,
  `id` varchar(255) NOT NULL,
  `success` varchar(10) NOT NULL,
  `full_ret` mediumtext NOT NULL,
  `alter_time` TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  KEY `id` (`id`),
  KEY `jid` (`jid`),
  KEY `fun` (`fun`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8""",
)


# The pgjsonb returner's documented schema (salt/returners/pgjsonb.py), salt_events left out.
PGJSONB_DDL = (
    "CREATE TABLE jids (jid varchar(255) NOT NULL primary key, load jsonb NOT NULL)",
    "CREATE INDEX idx_jids_jsonb on jids USING gin (load) WITH (fastupdate=on)",
    """CREATE TABLE salt_returns (
  fun varchar(50) NOT NULL,
  jid varchar(255) NOT NULL,
  return jsonb NOT NULL,
  id varchar(255) NOT NULL,
  success varchar(10) NOT NULL,
  full_ret jsonb NOT NULL,
  alter_time TIMESTAMP WITH TIME ZONE DEFAULT NOW())""",
    "CREATE INDEX idx_salt_returns_id ON salt_returns (id)",
    "CREATE INDEX idx_salt_returns_jid ON salt_returns (jid)",
    "CREATE INDEX idx_salt_returns_fun ON salt_returns (fun)",
    "CREATE INDEX idx_salt_returns_return ON salt_returns USING gin (return) with (fastupdate=on)",
    "CREATE INDEX idx_salt_returns_full_ret ON salt_returns USING gin (full_ret) with (fastupdate=on)",
)


def count(es, table="salt_returns"):
    """
    How many rows ``table`` holds, read through the runner's own store.
    """
    (n,) = es._store().select(f"SELECT COUNT(*) FROM `{table}`", ())[0]
    return n


def ret_event(minion="web1", jid=JID, fun="test.ping", ret=True, success=True, **extra):
    """
    A ``salt/job/<jid>/ret/<minion>`` tag and data as the master fires them.
    """
    data = {
        "cmd": "_return",
        "id": minion,
        "jid": jid,
        "fun": fun,
        "fun_args": [],
        "return": ret,
        "retcode": 0 if success else 1,
        "success": success,
        "_stamp": "2026-11-26T12:00:00.123456+00:00",
    }
    data.update(extra)
    return f"salt/job/{jid}/ret/{minion}", data


def new_event(jid=JID, fun="test.ping", minions=("web1",), **extra):
    """
    A ``salt/job/<jid>/new`` tag and data as the master fires them.
    """
    data = {
        "jid": jid,
        "tgt_type": "glob",
        "tgt": "*",
        "user": "root",
        "fun": fun,
        "arg": [],
        "minions": list(minions),
        "missing": [],
        "_stamp": "2026-11-26T12:00:00.000001+00:00",
    }
    data.update(extra)
    return f"salt/job/{jid}/new", data


#: The master's id in the tests of its runner and wheel jobs: Salt's default
#: form, ``<host>_master``.
MASTER_ID = "salt1_master"


def run_event(jid=JID, fun="runner.state.orchestrate", ret=None, success=True, **extra):
    """
    A ``salt/run/<jid>/ret`` tag and data as the master fires them for a
    runner job (``fun`` ``wheel.*``: ``salt/wheel/<jid>/ret``).
    """
    data = {
        "fun": fun,
        "jid": jid,
        "user": "alice",
        "fun_args": ["deploy", {"orchestration_jid": jid}],
        "_stamp": "2026-11-26T12:00:05.000001+00:00",
        "return": {"data": {MASTER_ID: {}}, "outputter": "highstate", "retcode": 0}
        if ret is None
        else ret,
        "success": success,
    }
    data.update(extra)
    prefix = "salt/wheel" if fun.startswith("wheel.") else "salt/run"
    return f"{prefix}/{jid}/ret", data


def storing_events(es, *globs):
    """
    ``es`` (a loaded runner) storing the events whose tags match ``globs``
    (``eventstore: events``) from now on, as the master ``es-master``.
    """
    es.__opts__ = {
        **es.__opts__,
        "id": "es-master",
        "eventstore": {**es.__opts__.get("eventstore", {}), "events": list(globs)},
    }
    es._STATE["runtime"] = None  # the config is read once per runtime
    return es


def beacon_event(minion="web1", beacon="diskusage", **data):
    """
    A beacon's event as the master fires it: ``salt/beacon/<minion>/<beacon>/``,
    the beacon's data with the minion's id.
    """
    return f"salt/beacon/{minion}/{beacon}/", {
        "id": minion,
        "data": data or {"/": 91.5},
        "_stamp": "2026-11-26T12:00:05.000001",
    }
