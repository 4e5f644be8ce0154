from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from prefect.testing.utilities import prefect_test_harness

from multihost import Cluster, cluster


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole session (it takes ~15 s to start)."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


_hosts = ExitStack()  # the multi-host cluster, closed after the last test that uses it


@pytest.fixture(scope="session")
def ray_hosts() -> Iterator[Cluster]:
    """Three hosts on this machine (network namespaces, tests/multihost.py): a Ray head, a Ray
    worker node and a client host; one cluster for the session's multi-host tests (it takes
    about a minute to start)."""
    with _hosts:
        c = _hosts.enter_context(cluster())
        c.start_ray()
        c.wait_for_ray_client()
        yield c


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Its Ray nodes hold CPU and memory: stop the cluster once the tests that use it are done
    (test_multihost*.py sort together), not when the whole session ends."""
    result = yield  # the item's own teardown first: module fixtures still talk to the cluster
    uses = "ray_hosts" in getattr(item, "fixturenames", ())
    if uses and (nextitem is None or "ray_hosts" not in getattr(nextitem, "fixturenames", ())):
        _hosts.close()
    return result
