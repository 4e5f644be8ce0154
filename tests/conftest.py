import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from pathlib import Path

import pytest

from tasks.shared.settings import Settings, get_settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose whole state folder is a fresh temporary directory."""
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("LLMOPS_MILVUS_URI", raising=False)
    return get_settings()


@pytest.fixture(scope="session")
def embedder():
    from tasks.clients.embedder import load_embedder

    return load_embedder()


@pytest.fixture(scope="session")
def tokenizer(embedder):
    return embedder.tokenizer


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray with two CPUs for the whole session (it takes ~5 s to start)."""
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, num_cpus=2)
    yield
    ray.shutdown()
