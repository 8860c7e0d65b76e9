"""
The runner on every backend: every test that takes ``es`` runs on a SQLite file,
a real MariaDB database and a real PostgreSQL database, each made by ``eventstore.init``.
"""

import pytest
from runnerlib import load_runner


@pytest.fixture
def mysql_runner_opts(mysql_opts, tmp_path):
    """
    ``mysql_opts`` plus a cachedir for the spool, and events taken as they
    come: no job cache to check them against (test_job_cache.py covers that).
    """
    return dict(mysql_opts, cachedir=str(tmp_path), eventstore={"verify_returns": False})


@pytest.fixture
def postgres_runner_opts(postgres_opts, tmp_path):
    """``postgres_opts`` as ``mysql_runner_opts`` is ``mysql_opts``."""
    return dict(postgres_opts, cachedir=str(tmp_path), eventstore={"verify_returns": False})


@pytest.fixture(params=["mysql", "postgres"])
def backend(request):
    """A database server, for tests of what MySQL and PostgreSQL must do alike."""
    return request.param


@pytest.fixture
def runner_opts(request, backend):
    """``mysql_runner_opts`` or ``postgres_runner_opts``, as ``backend`` says."""
    return request.getfixturevalue(f"{backend}_runner_opts")


@pytest.fixture(params=["sqlite", "mysql", "postgres"])
def es(request, tmp_path):
    if request.param == "sqlite":
        opts = {"cachedir": str(tmp_path), "eventstore": {"verify_returns": False}}
    else:
        opts = request.getfixturevalue(f"{request.param}_runner_opts")
    runner = load_runner(opts)
    runner.init()
    return runner
