"""
The runner on both backends: every test that takes ``es`` runs on a SQLite file
and on a real MariaDB database, each made by ``eventstore.init``.
"""

import pytest
from runnerlib import load_runner


@pytest.fixture(params=["sqlite", "mysql"])
def es(request, tmp_path):
    if request.param == "sqlite":
        opts = {"cachedir": str(tmp_path)}
    else:
        opts = request.getfixturevalue("mysql_opts")
    runner = load_runner(opts)
    runner.init()
    return runner
