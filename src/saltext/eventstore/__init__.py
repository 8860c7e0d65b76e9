"""
eventstore as a Salt extension: the master's runner (``runners/eventstore.py``),
engine (``engines/eventstore.py``) and reactor SLS (``reactor/eventstore.sls``),
which the wheel takes from ``_runners/``, ``_engines/`` and ``reactor/`` of the
repository (see pyproject.toml).  Salt's loader finds the ``runners`` and
``engines`` folders through this package's ``salt.loader`` entry point.
"""
