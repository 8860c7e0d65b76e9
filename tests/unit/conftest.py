import pytest
from runnerlib import load_runner


@pytest.fixture
def es(tmp_path):
    """
    The runner with a hand-made master config: SQLite under a temporary
    cachedir, and no job cache to check returns against (test_verify.py
    covers that), so events are taken as they come.
    """
    return load_runner(
        {"cachedir": str(tmp_path), "id": "master-1", "eventstore": {"verify_returns": False}}
    )
