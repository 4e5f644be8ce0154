from collections.abc import Iterator

import pytest
from prefect.testing.utilities import prefect_test_harness

from multihost import Cluster, cluster


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole session (it takes ~15 s to start)."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def ray_hosts() -> Iterator[Cluster]:
    """Three hosts on this machine (network namespaces, tests/multihost.py): a Ray head, a Ray
    worker node and a client host; one cluster per session (it takes about a minute)."""
    with cluster() as c:
        c.start_ray()
        c.wait_for_ray_client()
        yield c
