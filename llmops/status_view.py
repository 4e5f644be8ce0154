"""What `llmops status` prints: pure functions from the gathered state (plain dicts, the same
ones `--json` prints) to lines a person reads. Gathering is in `llmops.status`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Promotion tags a version with its scores as `<role>_<metric>` (`Evaluation.metrics`); the
# version's own are the candidate's.
OWN_SCORE = "candidate_"
PART_TITLES = {
    "registry": "registry",
    "serving": "serving",
    "runs": "flow runs",
    "index": "index",
    "quarantine": "quarantine",
}


def version_scores(tags: Mapping[str, str]) -> dict[str, float]:
    """A version's own scores from the tags promotion left on it (none before its evaluation)."""
    scores = {}
    for key, value in tags.items():
        if key.startswith(OWN_SCORE):
            try:
                scores[key.removeprefix(OWN_SCORE)] = float(value)
            except ValueError:  # a tag someone else wrote: not a score
                continue
    return dict(sorted(scores.items()))


def unavailable(reason: str) -> dict[str, str]:
    """A part of the status that could not be read, and why (one line)."""
    return {"unavailable": " ".join(str(reason).split())}


def describe_release(alias: str, release: Mapping[str, Any] | None) -> str:
    if release is None:
        return f"{alias}: none"
    scores = release.get("scores") or {}
    shown = ", ".join(f"{k} {v:.4g}" for k, v in scores.items()) or "no scores recorded"
    decision = release.get("decision")
    return f"{alias}: v{release['version']} ({shown})" + (f"; {decision}" if decision else "")


def describe_registry(part: Mapping[str, Any]) -> list[str]:
    if "unavailable" in part:
        return [part["unavailable"]]
    if not part.get("registered", True):
        return [f"{part['model']}: not registered yet (run the nightly or promote_model)"]
    releases = part.get("releases", {})
    lines = [f"{part['model']}: {part.get('versions', 0)} version(s)"]
    return lines + [describe_release(a, releases.get(a)) for a in ("champion", "challenger")]


def describe_serving(part: Mapping[str, Any], aliases: Mapping[str, str]) -> list[str]:
    """Which versions answer at the URL and with what share of traffic, named by alias."""
    if "unavailable" in part:
        return [part["unavailable"]]
    if not part.get("serving"):
        return [f"not serving (nothing answers at {part['url']})"]
    by_version = {v: a for a, v in aliases.items()}
    weights = {str(v["version"]): float(v["weight"]) for v in part.get("versions", [])}
    total = sum(weights.values())
    split = ", ".join(
        f"v{v} {100 * w / total if total else 0:.0f}%"
        + (f" ({by_version[v]})" if v in by_version else "")
        for v, w in weights.items()
    )
    return [f"{part.get('model', '?')} at {part['url']}: {split or 'no versions'}"]


def describe_flow_run(flow: str, run: Mapping[str, Any] | None) -> str:
    if run is None:
        return f"{flow}: no run yet"
    when = run.get("start_time") or "not started"
    took = run.get("duration_s")
    duration = f", {took:.0f} s" if isinstance(took, int | float) else ""
    return f"{flow}: {run['state']} ({run['name']}, started {when}{duration})"


def describe_runs(part: Mapping[str, Any]) -> list[str]:
    if "unavailable" in part:
        return [part["unavailable"]]
    runs = part.get("flows", {})
    return [f"Prefect at {part['api_url']}"] + [describe_flow_run(f, r) for f, r in runs.items()]


def describe_index(part: Mapping[str, Any]) -> list[str]:
    if "unavailable" in part:
        return [part["unavailable"]]
    return [f"{part['rows']} chunk(s) in {part['store']}"]


def describe_quarantine(part: Mapping[str, Any]) -> list[str]:
    if "unavailable" in part:
        return [part["unavailable"]]
    return [f"{part['rows']} quarantined row(s) in {part['folder']}"]


def render(status: Mapping[str, Mapping[str, Any]]) -> str:
    """The whole status as text: one titled block per part, in a fixed order."""
    registry = status.get("registry", {})
    aliases = {
        alias: str(release["version"])
        for alias, release in registry.get("releases", {}).items()
        if release is not None
    }
    describe = {
        "registry": describe_registry,
        "serving": lambda part: describe_serving(part, aliases),
        "runs": describe_runs,
        "index": describe_index,
        "quarantine": describe_quarantine,
    }
    width = max(len(t) for t in PART_TITLES.values())
    lines = []
    for key, title in PART_TITLES.items():
        if key not in status:
            continue
        first, *rest = describe[key](status[key])
        lines.append(f"{title:<{width}}  {first}")
        lines += [f"{'':<{width}}    {line}" for line in rest]
    return "\n".join(lines)
