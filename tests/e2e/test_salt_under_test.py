"""
The daemons and commands of this tier run the Salt under test (the venv's,
`make test SALT=...`), not a Salt found elsewhere on the machine.
"""

import salt.version
from saltlib import run_job


def test_minion_runs_the_salt_under_test(client, minion):
    _, version = run_job(client, minion, "test.version")
    assert version == salt.version.__version__


def test_salt_run_runs_the_salt_under_test(master):
    ret = master.salt_run_cli().run("salt.cmd", "test.versions_information")
    assert ret.data["Salt Version"]["Salt"] == salt.version.__version__
