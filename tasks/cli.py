"""`llmops`: the platform's command line for what is not a flow run."""

from __future__ import annotations

import argparse
import os
import textwrap
from pathlib import Path

from tasks.clients.embedder import DEFAULT_MODEL
from tasks.settings import REPO_ROOT


def _search(args: argparse.Namespace) -> None:
    from tasks.retrieval import search

    for hit in search(args.query, args.top_k, args.model):
        snippet = textwrap.shorten(hit.text, width=args.width, placeholder=" …")
        print(f"{hit.rank:>2}. score {hit.score:.3f}  {hit.source}  (doc {hit.doc_id[:12]})")
        print(textwrap.indent(snippet, "    "))


def _new_flow(args: argparse.Namespace) -> None:
    from tasks.scaffold import create

    made = create(Path(args.root), args.name, args.kind, args.description)
    print(f"wrote {made.tasks}, {made.flow}, {made.test}; prefect.yaml: {made.deployment}")
    print(f"next: fill in {made.tasks}, run `.venv/bin/pytest {made.test}` and `make test`")


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="llmops", description=__doc__)
    commands = parser.add_subparsers(required=True)
    p = commands.add_parser("search", help="top-k chunks for a question, with score and source")
    p.add_argument("query")
    p.add_argument("-k", "--top-k", type=int, default=5)
    p.add_argument("--model", default=DEFAULT_MODEL, help="the model the chunks were embedded with")
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
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (LookupError, ValueError, FileExistsError) as e:
        parser.exit(1, f"llmops: {e}\n")


if __name__ == "__main__":
    main()
