from collections.abc import Iterator

import pytest

from otlp_receiver import OtlpReceiver
from worlds import Service, World, serving_app, serving_world


# One app for the package: starting it (Serve, two versions, the retriever) takes about a minute,
# and it holds both Ray CPUs, so it ends with the package, before the modules that train or
# embed on that Ray run.
@pytest.fixture(scope="package")
def served_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with serving_world(tmp_path_factory.mktemp("served")) as world:
        yield world


@pytest.fixture(scope="package")
def traces() -> Iterator[OtlpReceiver]:
    """Where the served app's spans go (OTLP over HTTP on a local port)."""
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="package")
def service(ray_local, served_world: World, embedder, traces: OtlpReceiver) -> Iterator[Service]:
    """The Serve app of `worlds.serving_app`, shared by the evaluation, feedback and judge
    tests (each pins what it asks, and puts back the weights it changes)."""
    with serving_app(served_world, embedder, otlp=traces.endpoint) as running:
        yield running
