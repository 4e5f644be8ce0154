"""`python -m serving`: serve the registered model on local Ray (or `LLMOPS_RAY_ADDRESS`) until
interrupted. Without --weights the champion takes all traffic and a challenger, if any, is
served at weight 0 (reachable by pinning, `x-llmops-version`) until a canary raises it, and the
app follows the registry's aliases from then on: a promotion or a rollback (from the Prefect
UI) changes what is served within seconds, without a redeploy."""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time

from serving.options import Autoscaling, ModelOptions
from tasks.core.promotion import CHALLENGER, CHAMPION, REGISTERED_MODEL


def weights_from_aliases(aliases: dict[str, str]) -> dict[str, float]:
    """Challenger first (routing order: raising its share only moves callers towards it)."""
    champion, challenger = aliases.get(CHAMPION), aliases.get(CHALLENGER)
    if champion is None:
        raise ValueError("the model has no champion yet: promote a version first (promote flow)")
    weights = {challenger: 0.0} if challenger and challenger != champion else {}
    return {**weights, champion: 100.0}


def parse_weights(text: str) -> dict[str, float]:
    """'4=10,3=90' -> {'4': 10.0, '3': 90.0}"""
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    if any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(f"weights look like 4=10,3=90, not {text!r}")
    return {version.strip(): float(weight) for version, weight in pairs}


def parse_labels(text: str) -> dict[str, str]:
    """'llmops.io/role=control' -> {'llmops.io/role': 'control'} (comma-separated pairs)"""
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    if not pairs or any(len(p) != 2 or not p[0].strip() for p in pairs):
        raise argparse.ArgumentTypeError(f"labels look like llmops.io/role=control, not {text!r}")
    return {key.strip(): value.strip() for key, value in pairs}


def parse_autoscaling(text: str) -> tuple[int, int, float | None]:
    """'1-4@8' -> (1, 4, 8.0); '1-4' -> (1, 4, None)"""
    span, _, target = text.partition("@")
    low, _, high = span.partition("-")
    try:
        return int(low), int(high), float(target) if target else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"autoscaling looks like 1-4@8, not {text!r}") from None


def model_options(args: argparse.Namespace) -> ModelOptions:
    autoscaling = None
    if args.autoscale:
        low, high, target = args.autoscale
        autoscaling = Autoscaling(low, high, target or float(args.max_batch_size))
    try:
        return ModelOptions.from_args(args, autoscaling)
    except ValueError as exc:
        raise SystemExit(f"serving: {exc}") from None


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("--model", default=REGISTERED_MODEL, help="registered model name")
    parser.add_argument("--weights", type=parse_weights, help="version=weight,... (routing order)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--name", default="llmops", help="Serve application name")
    parser.add_argument(
        "--engine",
        choices=("continuous", "static"),
        default="continuous",
        help="continuous: batch per decoding step (default); static: Serve's @serve.batch",
    )
    parser.add_argument("--max-batch-size", type=int, default=8, help="rows decoded at once")
    parser.add_argument(
        "--max-queue", type=int, default=64, help="requests waiting per replica; more get 429"
    )
    parser.add_argument("--batch-wait-ms", type=float, default=10.0, help="static engine only")
    parser.add_argument("--model-cpus", type=float, default=1.0, help="CPUs per model replica")
    parser.add_argument(
        "--model-gpus", type=float, default=0.0, help="GPUs per model replica (bf16 on the GPU)"
    )
    parser.add_argument(
        "--model-replicas",
        type=int,
        default=1,
        help="replicas per version; Serve spreads them over the nodes",
    )
    parser.add_argument(
        "--autoscale",
        type=parse_autoscaling,
        metavar="MIN-MAX[@TARGET]",
        help="scale each version between MIN and MAX replicas on ongoing requests, TARGET per "
        "replica (default: --max-batch-size), e.g. 1-4@8; replaces --model-replicas",
    )
    parser.add_argument(
        "--control-labels",
        type=parse_labels,
        metavar="KEY=VALUE,...",
        help="keep the router and retriever on nodes with these Ray labels "
        "(give the head `ray start --labels llmops.io/role=control`)",
    )
    parser.add_argument(
        "--follow-s",
        type=float,
        help="read the registry's aliases this often and follow them (default: "
        "LLMOPS_SERVING_FOLLOW_S, 2 s; 0 = never; never with --weights)",
    )
    parser.add_argument(
        "--bake-s",
        type=float,
        help="keep a replaced champion loaded at weight 0 this long (default: "
        "LLMOPS_SERVING_BAKE_S, 1 h), so that a rollback is a weight change",
    )
    args = parser.parse_args(argv)

    from ray import serve

    from serving.app import deploy
    from tasks.clients.ray_cluster import ensure_ray
    from tasks.clients.registry import model_registry
    from tasks.shared.settings import get_settings

    settings = get_settings()
    try:
        weights = args.weights or weights_from_aliases(model_registry(settings).aliases(args.model))
    except ValueError as exc:
        parser.exit(1, f"serving: {exc}\n")
    follow_s = 0.0 if args.weights else _or(args.follow_s, settings.serving_follow_s)
    started = time.perf_counter()
    ensure_ray(settings)
    serve.start(http_options={"host": args.host, "port": args.port})
    deploy(
        settings,
        args.model,
        weights,
        name=args.name,
        options=model_options(args),
        control_labels=args.control_labels,
        follow_s=follow_s,
        bake_s=args.bake_s,
    )
    url = f"http://{args.host}:{args.port}"
    took = time.perf_counter() - started
    print(f"serving {args.model} {weights} at {url}/v1 (up in {took:.1f} s)")
    if follow_s:
        print(
            f"  following the registry's aliases (read every {follow_s:g} s): promote or roll "
            "back from the Prefect UI, no restart needed"
        )
    print(
        f"  try: curl {url}/v1/completions -H 'content-type: application/json' "
        '-d \'{"prompt": "The with statement"}\''
    )
    # SIGTERM (a service manager, `kill`) stops it the way Ctrl-C does; set after Ray's start,
    # which installs its own handler.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        threading.Event().wait()  # Serve runs in Ray's processes; this one only holds them
    except KeyboardInterrupt:
        if settings.ray_address:  # a cluster's app outlives this process, as Serve apps do
            print(
                f"left {args.name!r} running on {settings.ray_address}; "
                "`serve shutdown` there stops it"
            )
            return
        print("stopping the app …", flush=True)
        serve.shutdown()  # a local Ray ends with this process; its app first, in order
        print("stopped", flush=True)


def _or(given: float | None, default: float) -> float:
    return default if given is None else given


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
