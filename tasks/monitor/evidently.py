"""Evidently (0.7 API) over the two windows: drift per feature column, per model version, and
on the prompts' embeddings; the HTML reports.

The embedding drift score comes from Evidently's classifier method (`ModelDriftMethod`: ROC AUC
of a classifier told to separate the windows) called directly. The `EmbeddingsDrift` metric runs
the same method but also draws a t-SNE map of up to 2,500 rows a side (about 12 s for 1,000 a
side on two cores); it is only built when the HTML map is asked for.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.drift import DriftThresholds
from tasks.monitor.windows import CATEGORICAL, NUMERIC

MIN_EMBEDDED = 10  # the classifier splits the rows in halves; fewer cannot be told apart


def _filled(frame: pd.DataFrame, column: str) -> bool:
    return bool(frame[column].notna().any())


def feature_report(
    reference: pd.DataFrame, current: pd.DataFrame, t: DriftThresholds, per_version: bool = True
) -> tuple[Any, dict[str, float]]:
    """Evidently's data drift preset over every feature both windows have (normed Wasserstein
    distance for numbers, Jensen-Shannon for categories), plus latency and failures per model
    version served in both (for the HTML; the verdict compares versions itself); the snapshot
    and each column's distance."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.metrics.group_by import GroupByMetric
    from evidently.presets import DataDriftPreset

    numeric = [c for c in NUMERIC if _filled(reference, c) and _filled(current, c)]
    categorical = [c for c in CATEGORICAL if _filled(reference, c) and _filled(current, c)]
    lengths = ("prompt_chars", "prompt_tokens", "response_chars", "completion_tokens")
    thresholds = {c: t.length_distance for c in lengths} | {"language": t.language_distance}
    metrics: list[Any] = [
        DataDriftPreset(
            columns=numeric + categorical,
            num_method="wasserstein",
            cat_method="jensenshannon",
            per_column_threshold=thresholds,
        )
    ]
    if per_version and "version" in categorical:
        shared = sorted(set(reference["version"]) & set(current["version"]))
        metrics += [
            GroupByMetric(
                metric=ValueDrift(column=column, method=method),
                column_name="version",
                label=version,
            )
            for version in shared
            for column, method in (("latency_ms", "wasserstein"), ("failed", "jensenshannon"))
        ]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    columns = numeric + categorical
    with warnings.catch_warnings():  # scipy warns about constant columns; their distance is 0
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = Report(metrics).run(
            Dataset.from_pandas(
                current[columns].reset_index(drop=True), data_definition=definition
            ),
            Dataset.from_pandas(
                reference[columns].reset_index(drop=True), data_definition=definition
            ),
        )
    distances = {
        m["config"]["column"]: float(m["value"])
        for m in snapshot.dict()["metrics"]
        if m["config"]["type"] == "evidently:metric_v2:ValueDrift"
    }
    return snapshot, distances


def embedding_auc(reference: np.ndarray, current: np.ndarray) -> float | None:
    """ROC AUC of Evidently's classifier separating the windows' embeddings (0.5: the same
    distribution); None with fewer than MIN_EMBEDDED rows a side."""
    from evidently.metrics.embeddings import ModelDriftMethod

    if min(len(reference), len(current)) < MIN_EMBEDDED:
        return None
    score, _, _ = ModelDriftMethod()(pd.DataFrame(current), pd.DataFrame(reference))
    return float(score)


def embedding_report(reference: np.ndarray, current: np.ndarray, threshold: float) -> Any:
    """Evidently's `EmbeddingsDrift` metric (classifier method and t-SNE map) for the HTML."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift
    from evidently.metrics.embeddings import ModelDriftMethod
    from threadpoolctl import threadpool_limits

    names = [f"e{i}" for i in range(reference.shape[1])]
    definition = DataDefinition(embeddings={"prompt": names})
    method = ModelDriftMethod(threshold=threshold)
    # sklearn's t-SNE on OpenMP threads ran 3.5-11x slower than on one here (2 busy cores:
    # 2,000 points 43 s against 12 s, 64 points 5.6 s against 0.1 s).
    with threadpool_limits(1):
        return Report([EmbeddingsDrift(embeddings_name="prompt", drift_method=method)]).run(
            Dataset.from_pandas(pd.DataFrame(current, columns=names), data_definition=definition),
            Dataset.from_pandas(pd.DataFrame(reference, columns=names), data_definition=definition),
        )


def save_html(snapshot: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    snapshot.save_html(str(tmp))
    tmp.replace(path)  # a half-written report is never linked
    return path
