"""`llmops`: the platform's command line for what is not a flow run."""

from __future__ import annotations

import argparse
import getpass
import os
import textwrap
from pathlib import Path

from tasks.clients.embedder import EMBEDDING_MODEL
from tasks.core.promotion import REGISTERED_MODEL
from tasks.shared.settings import REPO_ROOT

SERVING_URL = "http://127.0.0.1:8000"  # where `make serve` listens


def _search(args: argparse.Namespace) -> None:
    if args.cold:  # everything loaded in this process, as a script would
        from tasks.clients.retrieval import search

        hits = [hit.model_dump() for hit in search(args.query, args.top_k, args.model)]
    else:
        from llmops.search_service import SearchUnavailable, ask
        from tasks.shared.settings import get_settings

        try:
            hits = ask(get_settings().home, args.query, args.top_k, args.model, args.idle_s)
        except SearchUnavailable as e:
            raise LookupError(f"{e} (`llmops search --cold` searches in this process)") from None
    for hit in hits:
        snippet = textwrap.shorten(hit["text"], width=args.width, placeholder=" …")
        doc = hit["doc_id"][:12]
        print(f"{hit['rank']:>2}. score {hit['score']:.3f}  {hit['source']}  (doc {doc})")
        print(textwrap.indent(snippet, "    "))


def _new_flow(args: argparse.Namespace) -> None:
    from llmops.scaffold import create

    made = create(Path(args.root), args.name, args.kind, args.description)
    print(f"wrote {made.package}, {made.flow}, {made.test}; prefect.yaml: {made.deployment}")
    print(f"next: fill in {made.package}, run `.venv/bin/pytest {made.test}` and `make test`")


def _plan_capacity(args: argparse.Namespace) -> None:
    import json

    from tasks.core.capacity import plan_for

    plan = plan_for(
        args.gpu,
        args.seq_len,
        args.batch,
        args.method,
        args.lora_rank,
        args.params,
        args.layers,
        args.hidden,
        args.vocab,
        args.precision,
        args.max_gpus,
    )
    if args.json:
        print(json.dumps(plan.as_dict(), indent=2))
        return
    rows = plan.rows()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _show(label: str, text: object, width: int) -> None:
    if isinstance(text, str) and text:
        snippet = textwrap.shorten(text, width=width, placeholder=" …")
        print(textwrap.indent(f"{label}: {snippet}", "    "))


def _feedback(args: argparse.Namespace) -> None:
    from datetime import UTC, datetime, timedelta

    from tasks.monitor.feedback import load_feedback
    from tasks.shared.settings import get_settings

    since = datetime.now(UTC) - timedelta(hours=args.hours)
    joined = load_feedback(get_settings(), since).tail(args.limit)
    if joined.empty:
        print(f"no feedback in the last {args.hours:g} hours")
        return
    for row in joined.itertuples():
        where = f"version {row.version}" if row.known else "request not in the log"
        print(f"{row.at:%Y-%m-%d %H:%M} {row.rating:+d}  {row.request_id}  ({where})", end="")
        print(f"  by {row.user}" if row.user else "")
        _show("question", row.prompt, args.width)
        _show("answer", row.response, args.width)
        _show("correction", row.correction, args.width)
        _show("comment", row.comment, args.width)


def _golden_candidates(args: argparse.Namespace) -> None:
    from tasks.monitor.feedback import approved_request_ids, golden_candidates, load_feedback
    from tasks.shared.settings import get_settings

    settings = get_settings()
    joined = load_feedback(settings)
    candidates = golden_candidates(joined, approved_request_ids(settings.golden_path))
    for row in candidates.itertuples():
        sources = ", ".join(row.source_ids) or "none (cannot be approved: no passages)"
        print(f"{row.request_id}  (version {row.version}, {row.at:%Y-%m-%d %H:%M})")
        _show("question", row.question, args.width)
        _show("answer", row.answer, args.width)
        _show("reference", row.reference, args.width)
        print(f"    source ids: {sources}")
    stray = int((~joined["known"] & joined["correction"].notna()).sum())
    print(f"{len(candidates)} candidate(s); approve one with `llmops golden approve <request id>`")
    if stray:
        print(f"{stray} correction(s) on requests the log does not hold (not candidates)")


def _golden_approve(args: argparse.Namespace) -> None:
    from tasks.monitor.feedback import approve_candidate
    from tasks.shared.settings import get_settings

    settings = get_settings()
    try:
        by = args.by or getpass.getuser()
    except (KeyError, OSError):  # no login name to be found (a container's bare uid)
        raise ValueError("say who approves: --by NAME") from None
    row = approve_candidate(settings, args.request_id, by)
    print(f"approved {args.request_id} by {row['approved_by']} into {settings.golden_path}")


def _status(args: argparse.Namespace) -> None:
    import json

    from llmops.status import gather
    from llmops.status_view import render
    from tasks.shared.settings import get_settings

    status = gather(get_settings(), args.model, args.serving_url, args.index_wait)
    print(json.dumps(status, indent=2) if args.json else render(status))


def _mlflow(args: argparse.Namespace) -> None:
    from llmops.mlflow_ui import open_ui
    from tasks.shared.settings import get_settings

    open_ui(get_settings(), args.host, args.port)


def _alerts(args: argparse.Namespace) -> None:
    import asyncio

    from llmops.alerts import alert_specs, install_alerts
    from tasks.shared.settings import get_settings

    url = args.webhook or get_settings().alert_webhook_url
    if not url:
        raise ValueError("give --webhook URL or set LLMOPS_ALERT_WEBHOOK_URL")
    names = asyncio.run(install_alerts(url, alert_specs()))
    print(f"alerts posting to {url}: {', '.join(names)}")


def _count(text: str) -> int:
    """A count written as 7e9, 7_000_000_000 or 7000000000."""
    value = float(text.replace("_", ""))
    if value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text}")
    return int(value)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="llmops", description=__doc__)
    commands = parser.add_subparsers(required=True)
    p = commands.add_parser("search", help="top-k chunks for a question, with score and source")
    p.add_argument("query")
    p.add_argument("-k", "--top-k", type=int, default=5)
    p.add_argument(
        "--model", default=EMBEDDING_MODEL, help="the model the chunks were embedded with"
    )
    p.add_argument("--width", type=int, default=300, help="characters of each chunk to show")
    p.add_argument(
        "--idle-s",
        type=float,
        default=600,
        help="the warm search process the first question starts exits after this long idle",
    )
    p.add_argument("--cold", action="store_true", help="search in this process, no warm one")
    p.set_defaults(run=_search)
    p = commands.add_parser(
        "new-flow", help="a new stage or ingestion source: flow, task module, test, deployment"
    )
    p.add_argument("name", help="verb_noun in snake_case, e.g. ingest_tickets")
    p.add_argument(
        "--kind",
        choices=["stage", "source"],
        default="stage",
        help="source: fetches documents and hands them to the ingest validation",
    )
    p.add_argument("--description", default="", help="one line: the UI and docstrings show it")
    p.add_argument("--root", default=str(REPO_ROOT), help="repository root (default: this one)")
    p.set_defaults(run=_new_flow)
    p = commands.add_parser(
        "plan-capacity", help="GPUs, parallelism, batch sizes and idle fraction for fine-tuning"
    )
    p.add_argument("--params", type=_count, help="parameter count, e.g. 7e9")
    p.add_argument("--layers", type=int, help="transformer layers (with --hidden)")
    p.add_argument("--hidden", type=int, help="hidden size (with --layers)")
    p.add_argument("--vocab", type=int, default=32000, help="vocabulary size")
    p.add_argument("--method", choices=["lora", "full"], default="lora")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument(
        "--gpu", required=True, help="GPU type: T4, L4, A10G, A100-40GB, A100-80GB, H100, H200"
    )
    p.add_argument("--seq-len", type=int, default=2048, help="tokens per sequence")
    p.add_argument("--batch", type=int, default=64, help="global batch (sequences per step)")
    p.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default="bf16")
    p.add_argument("--max-gpus", type=int, default=8, help="GPUs at most")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(run=_plan_capacity)
    p = commands.add_parser("feedback", help="recent feedback with the question and the answer")
    p.add_argument("--hours", type=float, default=24, help="how far back (default 24)")
    p.add_argument("--limit", type=int, default=20, help="the latest N (default 20)")
    p.add_argument("--width", type=int, default=200, help="characters of each text to show")
    p.set_defaults(run=_feedback)
    golden = commands.add_parser("golden", help="the golden set grown from corrections")
    steps = golden.add_subparsers(required=True)
    p = steps.add_parser("candidates", help="corrections not yet approved into the golden set")
    p.add_argument("--width", type=int, default=200, help="characters of each text to show")
    p.set_defaults(run=_golden_candidates)
    p = steps.add_parser("approve", help="append a candidate to the golden set (once)")
    p.add_argument("request_id")
    p.add_argument("--by", help="who approves (default: your login name)")
    p.set_defaults(run=_golden_approve)
    p = commands.add_parser(
        "status", help="champion and challenger, what serves, last runs, index and quarantine"
    )
    p.add_argument("--model", default=REGISTERED_MODEL, help="registered model name")
    p.add_argument(
        "--serving-url", default=SERVING_URL, help="the serving app (Serve's HTTP proxy)"
    )
    p.add_argument(
        "--index-wait", type=float, default=10, help="seconds to wait for a busy Milvus Lite file"
    )
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(run=_status)
    p = commands.add_parser("mlflow", help="the MLflow UI on the platform's tracking store")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(run=_mlflow)
    p = commands.add_parser(
        "alerts", help="install prefect.yaml's alerts as automations on the Prefect server"
    )
    p.add_argument("--webhook", help="the webhook URL (default: LLMOPS_ALERT_WEBHOOK_URL)")
    p.set_defaults(run=_alerts)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (LookupError, ValueError, FileExistsError) as e:
        parser.exit(1, f"llmops: {e}\n")


if __name__ == "__main__":
    main()
