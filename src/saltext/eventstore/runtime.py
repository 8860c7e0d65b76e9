"""
What the runner functions run with: a :py:class:`Runtime` (the master
config, what it resolves to, the writer with its store and spool, and the
job cache reader), built once per loaded runner from ``__opts__``; and the
registry of the databases behind the storage seam.  The runner module holds
the one runtime of its load: a reload of the runner (the reactor's, every
``reactor_refresh_interval``) starts afresh, as a restart does.
"""

from collections import namedtuple

from saltext.eventstore.config import resolve_config
from saltext.eventstore.jobcache import JobCache
from saltext.eventstore.spool import Spool
from saltext.eventstore.store_mysql import MySQLStore
from saltext.eventstore.store_postgres import PostgresStore
from saltext.eventstore.store_sqlite import SQLiteStore
from saltext.eventstore.writer import Writer

#: The databases behind the storage seam, by ``eventstore: backend``.
STORES = {"mysql": MySQLStore, "sqlite": SQLiteStore, "postgres": PostgresStore}

Runtime = namedtuple("Runtime", "opts config writer job_cache")


def build(opts):
    """
    The :py:class:`Runtime` for the master config ``opts``: no connection
    is made until a row is written or read.
    """
    config = resolve_config(opts)
    writer = Writer(STORES[config.backend](config), Spool(config.spool_dir))
    return Runtime(opts, config, writer, JobCache(opts))
