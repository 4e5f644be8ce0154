"""The nightly pipeline on the embedded defaults, for a person at a terminal (`make nightly`).

Its runs are recorded where `make ui` shows them: on the platform's Prefect server when it is
up, else on a temporary server over that server's own database (`LLMOPS_HOME/platform/prefect`),
so the UI shows every past run either way. The terminal gets the stages' progress, the summary
and where to look; the libraries' output (Ray, gRPC, warnings) goes to a log file under
`LLMOPS_HOME/logs/`, and the run's reports are written as files under `LLMOPS_HOME/reports/`.

    .venv/bin/python infra/local/run_nightly.py [--host 127.0.0.1] [--port 4200]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from run_platform import REPO, state_dir

# Prefect's flow-run log lines: "… | Flow run 'brave-fox' - Beginning subflow run 'brave-fox'
# for flow 'ingest_documents'" and "… | Flow run 'brave-fox' - Finished in state Completed()".
_BEGIN = re.compile(
    r"Flow run '(?P<run>[^']+)' - Beginning (?:sub)?flow run '[^']+' for flow '(?P<flow>[^']+)'"
)
_END = re.compile(r"Flow run '(?P<run>[^']+)' - Finished in state (?P<state>\w+)")
_OUT = re.compile(r"^(?P<key>flow run|reports|mlflow|nightly_pipeline): (?P<value>.*)$")


@dataclass
class Progress:
    """What the child said so far: the flows running, and its closing lines."""

    started: dict[str, tuple[str, float]] = field(default_factory=dict)  # run -> (flow, t0)
    said: dict[str, str] = field(default_factory=dict)  # "flow run", "reports", …

    def read(self, line: str, now: float) -> str | None:
        """The line a person should see for one line of the child's output, or None."""
        if begin := _BEGIN.search(line):
            self.started[begin["run"]] = (begin["flow"], now)
            return f"{begin['flow']} …"
        if end := _END.search(line):
            flow, t0 = self.started.get(end["run"], (end["run"], now))
            return f"{flow}: {end['state']} in {now - t0:.0f} s"
        if out := _OUT.match(line.strip()):
            self.said[out["key"]] = out["value"]
        return None


def server_up(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/api/health", timeout=2)
        return True
    except OSError:
        return False


def child_env(url: str, state: Path, up: bool) -> dict[str, str]:
    """The platform's server when it is up, else a temporary one on its database."""
    env = {**os.environ, "PREFECT_HOME": str(state / "prefect"), "PREFECT_LOGGING_COLORS": "false"}
    env.pop("PREFECT_API_URL", None)
    if up:
        env["PREFECT_API_URL"] = f"{url}/api"
    else:  # under load its start can take longer than Prefect's default wait
        env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "150")
    return env


def run_in_process() -> int:
    """The child: run the flow, write its reports, say where (read by `Progress`)."""
    sys.path.insert(0, str(REPO))
    from flows.nightly import nightly_pipeline
    from tasks.clients.tracking import run_url
    from tasks.shared.reports import export_run_reports
    from tasks.shared.settings import get_settings

    settings = get_settings()
    state = nightly_pipeline(return_state=True)
    run_id = state.state_details.flow_run_id
    print(f"\nflow run: {run_id}", flush=True)
    print(f"reports: {export_run_reports(run_id, settings.home / 'reports')}", flush=True)
    if not state.is_completed():
        print(f"nightly_pipeline: {state.name}: {state.message}", flush=True)
        return 1
    report = state.result()
    print(f"mlflow: {run_url(settings, report.finetune.run_id)}", flush=True)
    print(f"nightly_pipeline: {report.summary}", flush=True)
    return 0


def run(url: str) -> int:
    state = state_dir()
    up = server_up(url)
    log = state.parent / "logs" / f"nightly-{datetime.now():%Y%m%d-%H%M%S}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    (state / "prefect").mkdir(parents=True, exist_ok=True)  # Prefect makes only the last level
    where = f"the platform's server at {url}" if up else f"{state / 'prefect'} (`make ui` shows it)"
    print(f"nightly_pipeline: runs recorded in {where}; library output in {log}", flush=True)
    progress, started = Progress(), time.monotonic()
    with log.open("w") as out:
        child = subprocess.Popen(
            [sys.executable, __file__, "--in-process"],
            cwd=REPO,
            env=child_env(url, state, up),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert child.stdout is not None
        for line in child.stdout:
            out.write(line)
            if (shown := progress.read(line, time.monotonic() - started)) is not None:
                print(f"  [{time.monotonic() - started:5.0f} s] {shown}", flush=True)
        code = child.wait()
    said = progress.said
    print(f"\nnightly_pipeline: {said.get('nightly_pipeline', f'exited with {code}, see {log}')}")
    if run_id := said.get("flow run"):
        after = "" if up else "  (start it with `make ui`)"
        print(f"  Prefect UI: {url}/runs/flow-run/{run_id}{after}")
    if mlflow := said.get("mlflow"):
        print(f"  MLflow:     {mlflow}  (the fine-tuning run; `make mlflow` serves it)")
    if reports := said.get("reports"):
        print(f"  reports:    {reports}/")
    print(f"  log:        {log}")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="where `make ui` serves")
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_process:
        return run_in_process()
    try:
        return run(f"http://{args.host}:{args.port}")
    except KeyboardInterrupt:  # the child got the same Ctrl-C and stops on its own
        print("\nnightly_pipeline: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
