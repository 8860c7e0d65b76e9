"""
eventstore: store every job return the master sees into MySQL/MariaDB,
PostgreSQL or SQLite, in the mysql (pgjsonb) returner's tables.

The modules of this package do the work, one concern each
(docs/architecture.md is the map); the loader-facing runner
(``runners/eventstore.py``), engine (``engines/eventstore.py``) and reactor SLS
(``reactor/eventstore.sls``) are the repository's ``_runners/``, ``_engines/``
and ``reactor/`` files, which the wheel maps in here (see pyproject.toml).
Salt's loader finds the ``runners`` and ``engines`` folders through this
package's ``salt.loader`` entry point.  A runner synced from ``file_roots``
imports this package from the copy beside it (``_runners/saltext/``).
"""

#: This release of eventstore (runner, engine and reactor SLS).  The one place
#: it is written: pyproject.toml reads the package's version from here, and
#: eventstore.status shows it.
__version__ = "1.0.0"
