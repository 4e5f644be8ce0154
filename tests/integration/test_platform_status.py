"""`llmops status` against a real platform state: a registered model with a champion and a
challenger (promoted by the promotion code, scores and all), a filled Milvus Lite index and a
lake with quarantined rows; nothing serving and no Prefect server, which it says in one line
each instead of failing."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmops.cli import main
from tasks.clients.feature_store import ChunkIndex
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.shared import lake

from worlds import World, compressed, fill_index, free_port, promote, tiny_world

pytestmark = pytest.mark.integration
MODEL = "status-model"


@dataclass
class Platform:
    world: World
    rows: int
    quarantined: int
    args: list[str]  # pointing at a serving URL and a Prefect API nobody listens on


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, embedder) -> Iterator[Platform]:
    with tiny_world(tmp_path_factory.mktemp("status")) as world:
        champion = promote(world, compressed(world, "champion", steps=10), MODEL)
        assert champion.champion == "1"
        challenger = promote(world, compressed(world, "better", steps=30), MODEL, canary=True)
        assert (challenger.champion, challenger.challenger) == ("1", "2")
        fill_index(world, embedder)
        with ChunkIndex(world.settings) as index:
            rows = index.count()
        bad = world.settings.home / "bad-docs"
        bad.mkdir()
        (bad / "empty.txt").write_text("")
        (bad / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10)
        (bad / "notes.jsonl").write_text("{not json\n")
        report = ingest_folder(bad, IngestParams(source_dir=str(bad)), world.settings)
        assert report.quarantined >= 3
        quarantined = len(lake.read_quarantine(world.settings.quarantine_dir))
        os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{free_port()}/api"
        try:
            args = ["--model", MODEL, "--serving-url", f"http://127.0.0.1:{free_port()}"]
            yield Platform(world, rows, quarantined, args)
        finally:
            del os.environ["PREFECT_API_URL"]


def test_status_as_json_from_the_installed_command(platform: Platform) -> None:
    command = [str(Path(sys.executable).parent / "llmops"), "status", "--json", *platform.args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=os.environ)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)

    registry = status["registry"]
    assert registry["versions"] == 2
    champion, challenger = registry["releases"]["champion"], registry["releases"]["challenger"]
    assert champion["version"] == "1" and challenger["version"] == "2"
    assert champion["decision"] == "promoted" and challenger["decision"] == "canary"
    assert 0 < challenger["scores"]["bpb"] < champion["scores"]["bpb"]  # more steps, lower
    assert status["index"]["rows"] == platform.rows > 8
    assert status["quarantine"]["rows"] == platform.quarantined >= 3
    assert status["serving"] == {"url": platform.args[-1], "serving": False}
    assert "no Prefect server answers" in status["runs"]["unavailable"]
    assert "platform/prefect/prefect.db" in status["runs"]["unavailable"]


def test_status_as_text(platform: Platform, capsys: pytest.CaptureFixture[str]) -> None:
    main(["status", *platform.args])
    lines = capsys.readouterr().out.splitlines()
    print("\n".join(lines))
    text = "\n".join(lines)
    assert f"{MODEL}: 2 version(s)" in text
    assert "champion: v1 (bpb " in text and "; promoted" in text
    assert "challenger: v2 (bpb " in text and "; canary" in text
    assert f"{platform.rows} chunk(s) in " in text
    assert f"{platform.quarantined} quarantined row(s)" in text
    assert "not serving (nothing answers at" in text
    assert len(lines) == 7  # one line per part, and one for each release
