"""MLflow by URI alone: fine-tuning (Ray Train workers included) and registration/promotion
against an `mlflow server` started here with a SQLite database and an artifact folder it serves.
Runs, artifacts and aliases are read back through the server's REST API; the files must land in
the server's artifact folder, and nothing of MLflow under the client's LLMOPS_HOME."""

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from pydoc_data.topics import topics
from urllib.parse import urlencode

import pytest

from tasks.clients import Clients
from tasks.compress.prepare import resolve_source
from tasks.core.promotion import CHALLENGER, CHAMPION
from tasks.finetune.params import FinetuneParams
from tasks.finetune.trainer import finetune
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.promote.registration import alias_history
from tasks.shared.manifest import MANIFEST, folder_digest
from tasks.shared.settings import Settings, get_settings

from services import Server, mlflow_server
from worlds import compressed, promote, tiny_world

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as server:
        print(f"mlflow server healthy after {server.start_s:.1f} s at {server.url}")
        yield server


@pytest.fixture
def remote_settings(
    tracking: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """What an operator sets: the tracking server's URI, nothing else."""
    monkeypatch.setenv("LLMOPS_MLFLOW_TRACKING_URI", tracking.url)
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "state"))
    settings = get_settings()
    yield settings
    # Nothing of MLflow was kept on the client's side.
    assert not (settings.home / "mlflow.db").exists()
    assert not (settings.home / "mlartifacts").exists()


def rest(server: Server, endpoint: str, **query: str) -> dict:
    url = f"{server.url}/api/2.0/mlflow/{endpoint}?{urlencode(query)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def stored(server: Server, run_id: str) -> set[str]:
    """The files the server keeps for a run, relative to its `artifacts` folder."""
    [root] = [p for p in server.folder.rglob(run_id) if p.is_dir()]
    return {str(p.relative_to(root / "artifacts")) for p in root.rglob("*") if p.is_file()}


def test_finetune_tracks_through_the_server(
    ray_local, tracking: Server, remote_settings: Settings, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in sorted(topics)[:40]:
        (docs / f"{name}.txt").write_text(topics[name])
    snapshot = ingest_folder(docs, IngestParams(), remote_settings).snapshot_id
    params = FinetuneParams(snapshot_id=snapshot, max_steps=4, checkpoint_every=2, seq_len=64)
    report = finetune(params, remote_settings)

    run = rest(tracking, "runs/get", run_id=report.run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    assert run["info"]["artifact_uri"].startswith("mlflow-artifacts:/")  # served, not a path
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["data_snapshot"] == snapshot
    # Rank 0 of the Ray Train workers logged each step's loss through the server.
    history = rest(tracking, "metrics/get-history", run_id=report.run_id, metric_key="loss")
    assert [m["step"] for m in history["metrics"]] == [1, 2, 3, 4]
    listed = rest(tracking, "artifacts/list", run_id=report.run_id, path="model")
    wanted = {"model/adapter_model.safetensors", f"model/{MANIFEST}", "model/tokenizer.json"}
    assert wanted <= {f["path"] for f in listed["files"]}
    assert wanted <= stored(tracking, report.run_id)  # in the server's folder

    # Another machine (no local copy) fetches the model through the server, verified, and the
    # base model it started from (built here from scratch, so logged with the run).
    base = Path(tags["base_model_path"])
    shutil.rmtree(report.model_dir)
    shutil.rmtree(base)
    source = resolve_source(remote_settings, report.run_id)
    assert source.folder == Path(report.model_dir) and (source.folder / MANIFEST).exists()
    assert source.base_path != base and folder_digest(source.base_path) == tags["base_model_sha256"]
    assert f"base_model/{MANIFEST}" in stored(tracking, report.run_id)


def test_registration_and_promotion_through_the_server(
    tracking: Server, remote_settings: Settings, tmp_path: Path
) -> None:
    name = "remote-assistant"
    (tmp_path / "world").mkdir()
    with tiny_world(tmp_path / "world") as world:
        assert world.settings.tracking_uri == tracking.url
        first = promote(world, compressed(world, "steps-10", steps=10), name)
        shutil.rmtree(world.settings.model_cache_dir)  # v1 is fetched from the server
        worse = promote(world, compressed(world, "steps-3", steps=3), name)
    assert (first.version, first.promoted) == ("1", True)
    assert (worse.version, worse.promoted) == ("2", False)
    assert worse.evaluation.champion_bpb is not None  # v1 was downloaded and scored

    model = rest(tracking, "registered-models/get", name=name)["registered_model"]
    aliases = {a["alias"]: a["version"] for a in model["aliases"]}
    assert aliases == {CHAMPION: "1", CHALLENGER: "2"}
    version = rest(tracking, "model-versions/get", name=name, version="1")["model_version"]
    compress_run = version["run_id"]
    assert version["source"] == f"runs:/{compress_run}/model"
    assert f"model/{MANIFEST}" in stored(tracking, compress_run)

    changes = alias_history(name, Clients(world.settings))
    assert [(c.alias, c.version, c.action) for c in changes] == [
        (CHALLENGER, "1", "register"),
        (CHAMPION, "1", "promote"),
        (CHALLENGER, "none", "clear"),
        (CHALLENGER, "2", "register"),
    ]
    found = rest(tracking, "experiments/get-by-name", experiment_name="model-aliases")
    assert found["experiment"]["name"] == "model-aliases"
