"""Great Expectations (1.x) checks on the request log itself: schema, nulls, value ranges.

The router validates every record before writing it (`tasks.clients.request_schema`), so a failure
here means a part that did not come through that path (another writer, a hand-made file, an
older schema), or a value that is valid but implausible (a latency of hours)."""

from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig
from pydantic import BaseModel

from tasks.clients.request_schema import REQUIRED, SCHEMA


class LogCheck(BaseModel):
    expectation: str
    reason: str
    success: bool
    unexpected: int  # rows that broke it (0 for table-level checks that passed)


def request_log_expectations(max_latency_ms: float) -> list[gxe.Expectation]:
    """What every row of the request log satisfies; `meta.reason` is what the report says."""
    return [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=list(SCHEMA.names), exact_match=True, meta={"reason": "schema: the columns"}
        ),
        *(
            gxe.ExpectColumnValuesToNotBeNull(column=c, meta={"reason": f"{c} is never null"})
            for c in REQUIRED
        ),
        gxe.ExpectColumnValuesToBeUnique(
            column="request_id", meta={"reason": "request_id is unique"}
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="status", min_value=100, max_value=599, meta={"reason": "status is 100..599"}
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="latency_ms",
            min_value=0,
            max_value=max_latency_ms,
            meta={"reason": f"latency_ms is 0..{max_latency_ms:g}"},
        ),
        *(
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, meta={"reason": f"{c} >= 0"})
            for c in ("prompt_tokens", "completion_tokens")
        ),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column="version", min_value=1, meta={"reason": "version is not empty"}
        ),
        gxe.ExpectColumnValuesToBeJsonParseable(
            column="sources", meta={"reason": "sources is JSON text (or null)"}
        ),
    ]


def check_request_log(frame: pd.DataFrame, max_latency_ms: float) -> list[LogCheck]:
    """Validate a window of the request log; one result per expectation ([] for no rows)."""
    if frame.empty:
        return []
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("requests").add_dataframe_asset("window")
    batch_definition = asset.add_batch_definition_whole_dataframe("batch")
    suite = gx.ExpectationSuite(name="request-log")
    for expectation in request_log_expectations(max_latency_ms):
        suite.add_expectation(expectation)
    suite = context.suites.add(suite)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame.reset_index(drop=True)})
    result = batch.validate(suite, result_format={"result_format": "SUMMARY"})
    checks = []
    for r in result.results:
        if r.exception_info and r.exception_info.get("raised_exception"):
            raise RuntimeError(f"expectation errored: {r.exception_info['exception_message']}")
        config = r.expectation_config
        unexpected = int(r.result.get("unexpected_count") or 0)
        checks.append(
            LogCheck(
                expectation=config.type,
                reason=config.meta["reason"],
                success=bool(r.success),
                unexpected=unexpected,
            )
        )
    return checks
