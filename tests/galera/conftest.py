"""
A throwaway three-node Galera cluster (tests/galeracluster.py), started once
for this tier (~13 s), and the runner storing into it through
``eventstore: mysql_hosts``.  Every test leaves the three nodes up and synced.
"""

import pytest
import galeracluster


@pytest.fixture(scope="package")
def galera():
    lacking = galeracluster.missing()
    if lacking:
        pytest.skip(f"no Galera cluster: install {' '.join(lacking)}")
    cluster = galeracluster.GaleraCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(autouse=True)
def all_nodes_synced(galera):
    """Nodes a test killed come back, so that the next test has three."""
    yield
    for node in galera.nodes:
        if node.proc is None:
            node.rejoin()
    galera.wait_synced()


@pytest.fixture
def galera_database(galera):
    """A fresh database on the cluster (made on one node, it is on all three)."""
    name = galera.nodes[0].create_database()
    yield name
    # Before all_nodes_synced brings back a node the test killed.
    next(node for node in galera.nodes if node.proc is not None).drop_database(name)
