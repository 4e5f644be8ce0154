"""Incremental reading: which listed items changed since the last run over the same root, and
the listing to keep for the next one. An item is skipped only when its version is known and
equal to last time's and it was read under the same policy (parameters, rails, readers); its
documents then stay in the snapshot as they were."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tasks.ingest import formats
from tasks.ingest.params import IngestParams
from tasks.ingest.records import Item
from tasks.shared.lake import LISTING_SCHEMA

# Where a record came from does not change what it says.
_NOT_POLICY = {"source_dir", "urls", "sitemap", "demo_topics", "demo_modules", "batch_size"}


def reading_policy(params: IngestParams, rails_digest: str) -> str:
    """What else decides a document's fate: the parameters that screen and validate, the rails'
    rules and the format readers' code. A change in any of them reads every item again."""
    digest = hashlib.sha256(rails_digest.encode())
    digest.update(json.dumps(params.model_dump(mode="json", exclude=_NOT_POLICY)).encode())
    for path in sorted(Path(formats.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class Plan:
    """The items to read, and the rows (listing and snapshot) carried from the last run."""

    to_read: list[Item] = field(default_factory=list)
    carried: pd.DataFrame = field(default_factory=LISTING_SCHEMA.empty_table().to_pandas)
    unchanged: int = 0


def plan(listed: list[Item], last: pd.DataFrame, policy: str) -> Plan:
    known = last[last["policy"] == policy].groupby("key")["version"].first().to_dict()
    same = {i.key for i in listed if i.version is not None and known.get(i.key) == i.version}
    return Plan(
        to_read=[i for i in listed if i.key not in same],
        carried=last[last["key"].isin(same)].reset_index(drop=True),
        unchanged=len(same),
    )


def item_of(source: str, keys: set[str]) -> str:
    """The listed item a record's source belongs to (`report.pdf#page=3` → `report.pdf`)."""
    return source if source in keys else source.rsplit("#", 1)[0]


def listing(plan: Plan, accepted: pd.DataFrame, policy: str) -> pd.DataFrame:
    """The listing after this run: carried rows, then each item read (`plan.to_read`) with its
    documents (or one row without, so that its version is remembered)."""
    versions = {i.key: i.version for i in plan.to_read}
    keys = set(versions)
    docs = accepted.assign(key=[item_of(s, keys) for s in accepted["source"]])
    fresh = docs.assign(version=docs["key"].map(versions), policy=policy)
    with_docs = set(docs["key"])
    empty = [
        {"key": key, "version": version, "policy": policy, "doc_id": None, "source": None}
        for key, version in versions.items()
        if key not in with_docs
    ]
    frames = [plan.carried, fresh[LISTING_SCHEMA.names], pd.DataFrame(empty, dtype=object)]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return LISTING_SCHEMA.empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True)[LISTING_SCHEMA.names]
