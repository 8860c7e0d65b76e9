"""
eventstore.install_reactor: the reactor SLS that ships with the runner, put
where the master's ``reactor:`` config names it (a package install has no
file to copy by hand).  The checkout has the package's layout: the runner in
a folder, ``reactor/eventstore.sls`` next to that folder.
"""

import pytest
from runnerlib import REACTOR_SLS, REPO, load_runner


@pytest.fixture
def es():
    return load_runner({})


def test_writes_the_shipped_sls_and_returns_the_reactor_config(es, tmp_path):
    target = tmp_path / "reactor" / "eventstore.sls"
    ret = es.install_reactor(path=str(target))
    assert target.read_text() == REACTOR_SLS.read_text()
    assert f"Wrote {target}" in ret
    assert ret.endswith(
        f"reactor:\n  - 'salt/job/*/ret/*':\n    - {target}"
        f"\n  - 'salt/run/*/ret':\n    - {target}"
        f"\n  - 'salt/wheel/*/ret':\n    - {target}"
    )


def test_leaves_an_up_to_date_sls_alone(es, tmp_path):
    target = tmp_path / "eventstore.sls"
    es.install_reactor(path=str(target))
    assert "already" in es.install_reactor(path=str(target))


def test_updates_the_sls_of_an_older_release(es, tmp_path):
    target = tmp_path / "eventstore.sls"
    target.write_text('{"old": {"runner.eventstore.store": []}}')
    assert f"Updated {target}" in es.install_reactor(path=str(target))
    assert target.read_text() == REACTOR_SLS.read_text()


def test_does_not_overwrite_a_file_that_is_no_eventstore_sls(es, tmp_path):
    target = tmp_path / "other.sls"
    target.write_text("some_reaction: {}")
    ret = es.install_reactor(path=str(target))
    assert ret["retcode"] == 1 and "not overwritten" in ret["Error"]
    assert target.read_text() == "some_reaction: {}"


def test_writes_only_an_sls_file(es, tmp_path):
    ret = es.install_reactor(path=str(tmp_path / "master"))
    assert ret["retcode"] == 1 and "no .sls file" in ret["Error"]
    assert not (tmp_path / "master").exists()


def test_a_runner_synced_without_the_sls_says_to_copy_it(es, tmp_path):
    # What saltutil.sync_runners leaves: the runner alone in extension_modules/runners.
    es.__file__ = str(tmp_path / "runners" / "eventstore.py")
    ret = es.install_reactor(path=str(tmp_path / "eventstore.sls"))
    assert ret["retcode"] == 1 and "copy reactor/eventstore.sls" in ret["Error"]


def test_the_readmes_reactor_config_has_the_lines_install_reactor_prints(es):
    readme = (REPO / "README.md").read_text()
    config = readme[readme.index("   reactor:\n") : readme.index("   engines:")]
    assert [line.split("#")[0].strip() for line in config.splitlines()[1:] if "'" in line] == [
        f"- '{tag}':" for tag in es.lib.install.REACTOR_TAGS
    ]
