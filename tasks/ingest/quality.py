"""Great Expectations (1.x) validation of document batches, row by row."""

from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

REQUIRED_COLUMNS = ["doc_id", "source", "text", "n_chars", "utf8_valid", "duplicate_of"]


def document_expectations(min_chars: int, max_chars: int) -> list[gxe.Expectation]:
    """The rules an accepted document satisfies; `meta.reason` is what a quarantine row says,
    in words rather than the expectation's type (the duplicate rule is a null check on
    `duplicate_of`, so its type would name the wrong check). `meta.value_of` names a column
    whose value completes the reason (the source a duplicate repeats)."""
    return [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=REQUIRED_COLUMNS,
            exact_match=False,
            meta={"reason": "required fields missing from the batch"},
        ),
        *(
            gxe.ExpectColumnValuesToNotBeNull(column=c, meta={"reason": f"{c} is missing"})
            for c in ("doc_id", "source", "text")
        ),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column="text",
            min_value=min_chars,
            max_value=max_chars,
            meta={"reason": f"text length outside {min_chars}..{max_chars} characters"},
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="utf8_valid", value_set=[True], meta={"reason": "text is not valid UTF-8"}
        ),
        gxe.ExpectColumnValuesToBeNull(
            column="duplicate_of",
            meta={"reason": "duplicate document: same content as", "value_of": "duplicate_of"},
        ),
    ]


class DocumentValidator:
    """One ephemeral GX context and suite, reused for every batch of a run."""

    def __init__(self, min_chars: int, max_chars: int) -> None:
        if not 0 < min_chars <= max_chars:
            raise ValueError(f"need 0 < min_chars <= max_chars, got {min_chars}, {max_chars}")
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas("lake").add_dataframe_asset("documents")
        self._batch_definition = asset.add_batch_definition_whole_dataframe("batch")
        suite = gx.ExpectationSuite(name="documents")
        for expectation in document_expectations(min_chars, max_chars):
            suite.add_expectation(expectation)
        self._suite = context.suites.add(suite)

    def failures(self, frame: pd.DataFrame) -> dict[int, list[str]]:
        """Map each failing row's position to the reasons of the expectations it broke."""
        if frame.empty:
            return {}
        frame = frame.reset_index(drop=True)
        batch = self._batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(self._suite, result_format={"result_format": "COMPLETE"})
        failed: dict[int, list[str]] = {}
        for r in result.results:
            if r.exception_info and r.exception_info.get("raised_exception"):
                raise RuntimeError(f"expectation errored: {r.exception_info['exception_message']}")
            if r.success:
                continue
            meta = r.expectation_config.meta
            rows = r.result.get("unexpected_index_list")
            for i in rows if rows is not None else range(len(frame)):
                reason = meta["reason"]
                if meta.get("value_of") in frame.columns:
                    reason = f"{reason} {frame.at[int(i), meta['value_of']]}"
                failed.setdefault(int(i), []).append(reason)
        return failed
