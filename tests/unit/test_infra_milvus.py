"""Milvus Helm values (infra/milvus/values-*.yaml) against the official chart's defaults
(infra/milvus/chart-defaults.yaml, a copy of its values.yaml): Helm ignores keys the chart
does not read, so a typo would deploy the defaults silently. Also: each mode is whole
(a message queue, an object store, metadata) and the two modes differ only where they must."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from manifests import INFRA

pytestmark = pytest.mark.unit

DEFAULTS = INFRA / "milvus" / "chart-defaults.yaml"
MODES = ("standalone", "cluster")
# Values that hold free-form maps the chart passes through (no fixed keys to check).
FREE_FORM = {
    "resources",
    "requests",
    "limits",
    "nodeSelector",
    "annotations",
    "labels",
    "extraConfigFiles",
}


def values(mode: str) -> dict[str, Any]:
    return yaml.safe_load((INFRA / "milvus" / f"values-{mode}.yaml").read_text())


@pytest.fixture(scope="module")
def defaults() -> dict[str, Any]:
    return yaml.safe_load(DEFAULTS.read_text())


def key_paths(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in tree.items():
        path = (*prefix, key)
        yield path
        if isinstance(value, dict) and key not in FREE_FORM:
            yield from key_paths(value, path)


def lookup(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def is_known(defaults: dict[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = defaults
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


@pytest.mark.parametrize("mode", MODES)
def test_every_key_exists_in_the_charts_defaults(defaults: dict[str, Any], mode: str) -> None:
    unknown = [".".join(p) for p in key_paths(values(mode)) if not is_known(defaults, p)]
    assert not unknown, f"not read by the chart (typo?): {unknown}"


@pytest.mark.parametrize("mode", MODES)
def test_values_keep_the_charts_types(defaults: dict[str, Any], mode: str) -> None:
    for path in key_paths(values(mode)):
        ours, theirs = lookup(values(mode), path), lookup(defaults, path)
        if theirs is not None and not isinstance(theirs, str):  # strings: quantities, tags
            assert type(ours) is type(theirs), (".".join(path), ours, theirs)


def test_the_key_check_catches_a_typo(defaults: dict[str, Any]) -> None:
    assert not is_known(defaults, ("standalone", "messageQeue"))
    assert not is_known(defaults, ("etcd", "replicas"))  # the chart says replicaCount
    assert is_known(defaults, ("standalone", "messageQueue"))


def enabled(tree: dict[str, Any], *sections: str) -> list[str]:
    return [s for s in sections if tree.get(s, {}).get("enabled")]


def test_standalone_is_one_pod_with_its_embedded_queue() -> None:
    v = values("standalone")
    assert v["cluster"]["enabled"] is False
    assert v["standalone"]["replicas"] == 1
    assert v["standalone"]["messageQueue"] in {"rocksmq", "natsmq"}  # inside the pod
    assert not enabled(v, "pulsar", "kafka", "externalPulsar", "externalKafka")
    assert v["etcd"]["replicaCount"] == 1 and v["minio"]["mode"] == "standalone"


def test_cluster_has_a_message_queue_and_redundancy() -> None:
    v = values("cluster")
    assert v["cluster"]["enabled"] is True
    assert len(enabled(v, "pulsar", "kafka", "externalPulsar", "externalKafka")) == 1
    assert v["etcd"]["replicaCount"] % 2 == 1 and v["etcd"]["replicaCount"] >= 3  # a quorum
    assert v["minio"]["mode"] == "distributed"
    assert v["proxy"]["replicas"] >= 2 and v["queryNode"]["replicas"] >= 2


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_has_metadata_and_an_object_store(mode: str) -> None:
    v = values(mode)
    assert len(enabled(v, "etcd", "externalEtcd")) == 1
    assert len(enabled(v, "minio", "externalS3")) == 1


def test_both_modes_serve_the_same_milvus_the_same_way() -> None:
    standalone, cluster = values("standalone"), values("cluster")
    for key in ("image", "service", "extraConfigFiles", "metrics"):
        assert standalone[key] == cluster[key], key
    # The platform sends LLMOPS_MILVUS_TOKEN: the server must check it.
    config = yaml.safe_load(standalone["extraConfigFiles"]["user.yaml"])
    assert config["common"]["security"]["authorizationEnabled"] is True
