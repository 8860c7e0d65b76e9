import pytest
from runnerlib import load_runner


@pytest.fixture
def es(tmp_path):
    """The runner with a hand-made master config: SQLite under a temporary cachedir."""
    return load_runner({"cachedir": str(tmp_path), "id": "master-1"})
