"""`llmops`: the platform's command line for what is not a flow run."""

from __future__ import annotations

import argparse
import os
import textwrap
from pathlib import Path

from tasks.clients.embedder import EMBEDDING_MODEL
from tasks.shared.settings import REPO_ROOT


def _search(args: argparse.Namespace) -> None:
    from tasks.embed.retrieval import search

    for hit in search(args.query, args.top_k, args.model):
        snippet = textwrap.shorten(hit.text, width=args.width, placeholder=" …")
        print(f"{hit.rank:>2}. score {hit.score:.3f}  {hit.source}  (doc {hit.doc_id[:12]})")
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
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (LookupError, ValueError, FileExistsError) as e:
        parser.exit(1, f"llmops: {e}\n")


if __name__ == "__main__":
    main()
