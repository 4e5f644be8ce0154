"""`make nightly`'s terminal: the stages' progress read from Prefect's log lines, and the
reports written as markdown files."""

import importlib.util
import sys
from pathlib import Path

import pytest

from tasks.shared.reports import artifact_markdown, file_name, table_markdown

pytestmark = pytest.mark.unit

LOCAL = Path(__file__).resolve().parents[2] / "infra" / "local"


def runner():
    sys.path.insert(0, str(LOCAL))  # it imports run_platform beside it, as when run as a script
    try:
        spec = importlib.util.spec_from_file_location("run_nightly", LOCAL / "run_nightly.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["run_nightly"] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(LOCAL))


LINES = [
    ("07:00:01.1 | INFO    | prefect.engine - Created flow run 'swift-owl' for flow 'x'", None),
    (
        "07:00:02.0 | INFO    | Flow run 'nightly-1' - Beginning flow run 'nightly-1' "
        "for flow 'nightly_pipeline'",
        "nightly_pipeline …",
    ),
    (
        "07:00:03.0 | INFO    | Flow run 'brave-fox' - Beginning subflow run 'brave-fox' "
        "for flow 'ingest_documents'",
        "ingest_documents …",
    ),
    ("W1202 07:00:04 grpc noise", None),
    (
        "07:00:33.0 | INFO    | Flow run 'brave-fox' - Finished in state Completed()",
        "ingest_documents: Completed in 2 s",
    ),
    ("flow run: 0b7c", None),
    ("reports: /state/reports/nightly-1", None),
    ("mlflow: http://127.0.0.1:5000/#/experiments/1/runs/abc", None),
    ("nightly_pipeline: ingested 9 documents", None),
]


def test_progress_shows_each_stage_and_keeps_the_closing_lines() -> None:
    progress = runner().Progress()
    # The runner times a stage by its own clock (here each line's index), not the log's.
    shown = [progress.read(line, float(now)) for now, (line, _) in enumerate(LINES)]
    assert shown == [want for _, want in LINES]
    assert progress.said == {
        "flow run": "0b7c",
        "reports": "/state/reports/nightly-1",
        "mlflow": "http://127.0.0.1:5000/#/experiments/1/runs/abc",
        "nightly_pipeline": "ingested 9 documents",
    }


def test_a_failed_stage_says_its_state() -> None:
    progress = runner().Progress()
    progress.read("Flow run 'a' - Beginning subflow run 'a' for flow 'compress_model'", 10.0)
    assert progress.read("Flow run 'a' - Finished in state Failed('boom')", 25.0) == (
        "compress_model: Failed in 15 s"
    )


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            [{"stage": "ingest", "wall s": 3.5}, {"stage": "a|b", "note": "two\nlines"}],
            "| stage | wall s | note |\n|---|---|---|\n"
            "| ingest | 3.5 |  |\n| a\\|b |  | two lines |\n",
        ),
        ([], "(empty table)\n"),
    ],
    ids=["columns-in-first-seen-order-cells-escaped", "empty"],
)
def test_table_markdown(rows: list[dict], expected: str) -> None:
    assert table_markdown(rows) == expected


@pytest.mark.parametrize(
    ("kind", "data", "description", "expected"),
    [
        ("markdown", "# Ingest\nread 3", "ingest", "ingest\n\n# Ingest\nread 3\n"),
        ("table", '[{"a": 1}]', None, "| a |\n|---|\n| 1 |\n"),
        ("table", {"a": [1, 2]}, None, "| a |\n|---|\n| 1 |\n| 2 |\n"),
        ("link", "http://x/run", "the run", "the run\n\n<http://x/run>\n"),
    ],
    ids=["markdown", "table-as-json-rows", "table-as-columns", "link"],
)
def test_artifact_markdown(kind: str, data: object, description: str | None, expected: str) -> None:
    assert artifact_markdown(kind, data, description) == expected


def test_file_names_are_safe() -> None:
    assert file_name("nightly-summary", "table", 0) == "nightly-summary.md"
    assert file_name("a/b c", "markdown", 1) == "a-b-c.md"
    assert file_name(None, "progress", 3) == "progress-3.md"
