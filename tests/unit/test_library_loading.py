"""
How the runner finds its modules (the saltext.eventstore package): beside it
when synced from file_roots, else the installed package; afresh at every load,
as Salt's loader runs the runner file afresh.
"""

import importlib.util
import itertools
import os
import subprocess
import sys

from runnerlib import LIBRARY, RUNNER_PATH, copy_synced_install

_names = itertools.count()


def load(path, opts=None):
    """The runner file at ``path``, loaded as Salt's loader loads it: by path, under a name of its own."""
    spec = importlib.util.spec_from_file_location(f"synced_eventstore_{next(_names)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.__opts__ = opts or {}
    module.__context__ = {}
    return module


def test_a_synced_runner_imports_the_package_synced_beside_it(tmp_path):
    runner = load(copy_synced_install(tmp_path / "_runners"))
    beside = tmp_path / "_runners" / "saltext" / "eventstore"
    assert runner.readback.__file__ == str(beside / "readback.py")
    assert sys.modules[LIBRARY].__file__ == str(beside / "__init__.py")


def test_a_runner_synced_anew_runs_the_package_synced_with_it_not_the_one_loaded_before(
    tmp_path,
):
    path = copy_synced_install(tmp_path / "_runners")
    assert load(path).__version__ != "99.0.0"
    package = tmp_path / "_runners" / "saltext" / "eventstore" / "__init__.py"
    package.write_text(package.read_text().replace('__version__ = "', '__version__ = "99.0.0+'))
    assert load(path).__version__.startswith("99.0.0+")


def test_each_load_of_the_runner_has_modules_of_its_own(tmp_path):
    path = copy_synced_install(tmp_path / "_runners")
    first, second = load(path), load(path)
    assert first.intake is not second.intake
    # The first load keeps working with its own modules.
    assert first.config.truthy("yes") and second.config.truthy("yes")


def test_a_runner_synced_without_its_package_says_what_to_copy(tmp_path):
    runners = tmp_path / "_runners"
    runners.mkdir()
    (runners / "eventstore.py").write_bytes(RUNNER_PATH.read_bytes())
    # A Python that has Salt but not this checkout's src/ on its path, as a master.
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('eventstore', {str(runners / 'eventstore.py')!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "module.__opts__ = {}\n"
        "print(module.__virtual__())\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "(False, " in done.stdout
    assert "copy src/saltext of the release to _runners/saltext/" in done.stdout
