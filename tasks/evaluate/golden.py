"""Validation of a golden evaluation set (JSONL a person supplies) with Great Expectations.

Each line is one row: {"question": ..., "reference": ..., "source_ids": [...]}, or with
"answerable": false a question the model should decline (no source ids; the reference defaults
to the refusal). A row that fails is quarantined with every reason it failed, its line number
and its raw text; nothing is dropped silently and read = accepted + quarantined.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Collection
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from great_expectations.data_context.types.base import ProgressBarsConfig
from pydantic import BaseModel

from tasks.core.scorers import REFUSAL
from tasks.core.text import is_valid_unicode, normalize_text

QUARANTINE_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("line", pa.int64()),
        ("raw", pa.string()),
        ("reasons", pa.list_(pa.string())),
        ("snapshot_id", pa.string()),
    ]
)
# (column, what it must be, the reason a failing row gets, whether the column details it)
_RULES = [
    ("json_error", "null", "invalid JSON line", True),
    ("question", "present", "missing question (absent, empty or not text)", False),
    ("reference", "present", "missing reference (absent, empty or not text)", False),
    ("missing_sources", "false", "missing source ids (an answerable question needs one)", False),
    ("unknown_sources", "null", "unknown source id", True),
    ("duplicate_of", "null", "duplicate question", True),
    ("malformed", "null", "malformed field", True),
]
_CHECKED = ["line", *(rule[0] for rule in _RULES)]


def golden_expectations() -> list[gxe.Expectation]:
    """The rules an accepted golden row satisfies; `meta.reason` is what a quarantine row says."""
    build = {
        "null": lambda c, meta: gxe.ExpectColumnValuesToBeNull(column=c, meta=meta),
        "present": lambda c, meta: gxe.ExpectColumnValuesToNotBeNull(column=c, meta=meta),
        "false": lambda c, meta: gxe.ExpectColumnValuesToBeInSet(
            column=c, value_set=[False], meta=meta
        ),
    }
    return [build[rule](column, {"reason": reason}) for column, rule, reason, _ in _RULES]


class GoldenReport(BaseModel):
    """What became of a golden file's rows (blank lines are not rows)."""

    source: str
    snapshot_id: str
    read: int
    accepted: int
    quarantined: int
    reasons: dict[str, int]
    quarantine_path: str | None = None

    @property
    def reconciles(self) -> bool:
        return self.read == self.accepted + self.quarantined


def _text(value: object) -> str | None:
    if not isinstance(value, str) or not is_valid_unicode(value):
        return None
    text = normalize_text(value)
    return text or None


def _parse_line(number: int, data: bytes, known: Collection[str], snapshot_id: str) -> dict:
    row: dict = {c: None for c in _CHECKED} | {"line": number, "missing_sources": False}
    row |= {"raw": data.decode("utf-8", "backslashreplace"), "source_ids": [], "answerable": True}
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return row | {"json_error": "not valid UTF-8"}
    except json.JSONDecodeError as e:
        return row | {"json_error": f"{e.msg} (column {e.colno})"}
    if not isinstance(obj, dict):
        return row | {"json_error": f"a row is a JSON object, got {type(obj).__name__}"}
    problems = []
    answerable = obj.get("answerable", True)
    if not isinstance(answerable, bool):
        problems.append(f"answerable must be true or false, got {answerable!r}")
        answerable = True
    ids = obj.get("source_ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) and i.strip() for i in ids):
        problems.append("source_ids must be a list of document ids")
        ids = []
    ids = list(dict.fromkeys(i.strip() for i in ids))
    if not answerable and ids:
        problems.append("a question to decline (answerable false) lists source ids")
    reference = _text(obj.get("reference"))
    unknown = [i for i in ids if i not in known]
    return row | {
        "question": _text(obj.get("question")),
        "reference": reference if reference or answerable else REFUSAL,
        "answerable": answerable,
        "source_ids": ids,
        "missing_sources": answerable and not ids and not problems,
        "unknown_sources": (
            f"{', '.join(unknown)} (not in snapshot {snapshot_id})" if unknown else None
        ),
        "malformed": "; ".join(problems) or None,
    }


def _mark_duplicates(rows: list[dict], key: Callable[[str], str]) -> None:
    """The first line asking a question keeps it (even when it fails otherwise: a person fixes
    the file, not the validator); each later line asking it again is a duplicate."""
    first: dict[str, int] = {}
    for row in rows:
        if row["question"] is None:
            continue
        seen = first.setdefault(key(row["question"]), row["line"])
        if seen != row["line"]:
            row["duplicate_of"] = f"same question as line {seen}"


def _failures(frame: pd.DataFrame) -> dict[int, list[tuple[str, str | None]]]:
    """Row position -> [(reason, detail column)] for every check the row fails."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("golden").add_dataframe_asset("rows")
    batch_definition = asset.add_batch_definition_whole_dataframe("batch")
    suite = gx.ExpectationSuite(name="golden")
    for expectation in golden_expectations():
        suite.add_expectation(expectation)
    details = {reason: column if detailed else None for column, _, reason, detailed in _RULES}
    suite = context.suites.add(suite)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    failed: dict[int, list[tuple[str, str | None]]] = {}
    for r in result.results:
        if r.exception_info and r.exception_info.get("raised_exception"):
            raise RuntimeError(f"expectation errored: {r.exception_info['exception_message']}")
        if r.success:
            continue
        reason = r.expectation_config.meta["reason"]
        rows = r.result.get("unexpected_index_list")
        for i in rows if rows is not None else range(len(frame)):
            failed.setdefault(int(i), []).append((reason, details[reason]))
    return failed


def validate_golden(
    path: Path,
    known_doc_ids: Collection[str],
    question_key: Callable[[str], str],
    quarantine_dir: Path,
    snapshot_id: str,
) -> tuple[list[dict], GoldenReport]:
    """The accepted rows (line, question, reference, source_ids, answerable) and the report;
    failing rows are written to `quarantine_dir`. ValueError when the file holds no row or no
    row passes (the quarantine is written first, so the reasons can be read)."""
    if not path.is_file():
        raise FileNotFoundError(f"golden set {path} not found")
    data = path.read_bytes()
    known = set(known_doc_ids)
    rows = [
        _parse_line(n, line, known, snapshot_id)
        for n, line in enumerate(data.splitlines(), start=1)
        if line.strip()
    ]
    if not rows:
        raise ValueError(
            f"golden set {path} is empty: give one JSON object per line with question, "
            "reference and source_ids"
        )
    _mark_duplicates(rows, question_key)
    frame = pd.DataFrame([{c: r[c] for c in _CHECKED} for r in rows])
    failed = _failures(frame)
    reasons: dict[str, int] = {}
    accepted, quarantined = [], []
    for i, row in enumerate(rows):
        found = failed.get(i, [])
        if row["json_error"]:  # nothing else about an unreadable line means anything
            found = [f for f in found if f[0] == "invalid JSON line"] or [
                ("invalid JSON line", "json_error")
            ]
        if not found:
            accepted.append(row)
            continue
        for reason, _ in found:
            reasons[reason] = reasons.get(reason, 0) + 1
        texts = [f"{reason}: {row[d]}" if d else reason for reason, d in found]
        quarantined.append(
            {"source": str(path), "line": row["line"], "raw": row["raw"], "reasons": texts}
        )
    quarantine_path = _write_quarantine(quarantine_dir, data, snapshot_id, quarantined)
    report = GoldenReport(
        source=str(path),
        snapshot_id=snapshot_id,
        read=len(rows),
        accepted=len(accepted),
        quarantined=len(quarantined),
        reasons=reasons,
        quarantine_path=str(quarantine_path) if quarantine_path else None,
    )
    if not report.reconciles:  # a bug, never a data problem
        raise RuntimeError(f"golden set counts do not reconcile: {report}")
    if not accepted:
        raise ValueError(
            f"golden set {path}: none of its {report.read} rows passed validation "
            f"({reasons}); the rows and their reasons are in {quarantine_path}"
        )
    keep = ("line", "question", "reference", "source_ids", "answerable")
    return [{k: r[k] for k in keep} for r in accepted], report


def _write_quarantine(folder: Path, data: bytes, snapshot_id: str, rows: list[dict]) -> Path | None:
    """The failing rows, in a file named by the input's content and the snapshot it was
    checked against (so a re-run writes the same file, once)."""
    if not rows:
        return None
    path = folder / f"golden-{hashlib.sha256(data).hexdigest()[:16]}-{snapshot_id}.parquet"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(
        [r | {"snapshot_id": snapshot_id} for r in rows], schema=QUARANTINE_SCHEMA
    )
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path
