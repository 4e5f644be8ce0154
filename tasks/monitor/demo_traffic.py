"""Demo traffic for the drift monitor: prompts from real text, written to the request log.

Three sources, so that a monitor can be shown (and tested) on real shifts:

- `python_doc_prompts`: sentences of the interpreter's own docs (the demo corpus): the traffic
  the platform is trained for;
- `man_page_prompts("en")`: English Linux man pages (section 7 of Debian's `manpages`
  package): another domain, same language;
- `man_page_prompts("de")`: the German man pages that dpkg, apt, man-db, passwd and procps
  ship: another language.

Man pages are read as groff source from `/usr/share/man` (no `man` or `groff` needed). When they
are missing, a FileNotFoundError says which Debian package brings them back.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from pydoc_data.topics import topics as PYDOC_TOPICS
from typing import Any

from tasks.core.text_features import sentences

MAN_ROOT = Path("/usr/share/man")
# Overview pages of Debian's `manpages` package: prose about the kernel and the C library.
ENGLISH_PAGES = (
    "capabilities",
    "cgroups",
    "credentials",
    "epoll",
    "fanotify",
    "futex",
    "glob",
    "hier",
    "inotify",
    "ip",
    "keyrings",
    "locale",
    "mq_overview",
    "namespaces",
    "netlink",
    "packet",
    "path_resolution",
    "pipe",
    "pthreads",
    "sched",
    "sem_overview",
    "shm_overview",
    "signal",
    "socket",
    "symlink",
    "tcp",
    "time",
    "udp",
    "unix",
    "user_namespaces",
    "vdso",
)
MIN_PAGES = 10

# Escapes seen in these pages; anything else is dropped. Order matters: longest first.
_NAMED = {
    ":a": "ä",
    ":o": "ö",
    ":u": "ü",
    ":A": "Ä",
    ":O": "Ö",
    ":U": "Ü",
    "ss": "ß",
    "em": "—",
    "en": "–",
    "aq": "'",
    "lq": '"',
    "rq": '"',
    "Fo": "«",
    "Fc": "»",
    "oq": "'",
    "cq": "'",
    "mu": "×",
    "bu": "•",
    "co": "©",
    "'e": "é",
    "`e": "è",
    "'a": "á",
    "`a": "à",
    "^e": "ê",
}
_ESCAPE = re.compile(
    r"\\(?:\((?P<two>..)|\[(?P<long>[^\]]*)\]|\*(?:\(..|\[[^\]]*\]|.)|f(?:\(..|\[[^\]]*\]|.)"
    r"|s[-+]?\d+|[hvwlLoDxbNSR]'[^']*'|(?P<one>.))"
)
_ONE = {
    "-": "-",
    "e": "\\",
    " ": " ",
    "~": " ",
    "0": " ",
    "&": "",
    "|": "",
    "^": "",
    "c": "",
    ".": ".",
    "'": "'",
    "`": "`",
}
_FONT_MACRO = re.compile(r"^[.'][ \t]*(B|I|SM|SB|BR|RB|BI|IB|IR|RI)(?:[ \t]+(.*))?$")
_BREAK_MACRO = re.compile(r"^[.'][ \t]*(PP|LP|P|SH|SS|TP|IP|HP|sp|br|RS|RE|TQ|Sh|Pp)\b")


def _unescape(match: re.Match[str]) -> str:
    if match["two"] is not None:
        return _NAMED.get(match["two"], "")
    if match["long"] is not None:
        code = match["long"]
        if code.startswith("u") and re.fullmatch(r"u[0-9A-Fa-f]{4,6}", code):
            return chr(int(code[1:], 16))
        return _NAMED.get(code, "")
    if match["one"] is not None:
        return _ONE.get(match["one"], "")
    return ""  # fonts, strings, sizes, motions


def groff_to_text(source: str) -> str:
    """The prose of a man page's groff source: macros and escapes removed, paragraphs kept."""
    lines: list[str] = []
    in_definition = False
    for line in source.splitlines():
        if in_definition:
            in_definition = not line.startswith("..")
            continue
        if re.match(r"^[.'][ \t]*(de|ig|am)\b", line):
            in_definition = True
            continue
        font = _FONT_MACRO.match(line)
        if font:
            lines.append((font[2] or "").replace('"', ""))
        elif _BREAK_MACRO.match(line):
            lines.append("")
        elif not line.startswith((".", "'")):
            lines.append(line)
    text = _ESCAPE.sub(_unescape, "\n".join(lines))
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return "\n\n".join(p for p in paragraphs if p)


def python_doc_prompts() -> list[str]:
    """Every prose sentence of the pydoc topics, in a fixed order."""
    return [s for name in sorted(PYDOC_TOPICS) for s in sentences(PYDOC_TOPICS[name])]


def man_page_prompts(language: str = "en", root: Path = MAN_ROOT) -> list[str]:
    """Every prose sentence of the English overview pages (`en`) or of the pages under
    `root/<language>` (German: `de`), in a fixed order."""
    if language == "en":
        pages = [p for name in ENGLISH_PAGES for p in sorted(root.glob(f"man7/{name}.7.gz"))]
        package = "manpages"
    else:
        pages = sorted(root.glob(f"{language}/man[1-8]/*.gz"))
        package = "dpkg, apt, man-db, passwd and procps (their translated pages)"
    if len(pages) < MIN_PAGES:
        raise FileNotFoundError(
            f"found {len(pages)} man pages for language {language!r} under {root}, need "
            f"{MIN_PAGES}: install the Debian package(s) {package} and make sure no "
            "path-exclude for /usr/share/man is set under /etc/dpkg/dpkg.cfg.d (slim images)"
        )
    out = []
    for page in pages:
        source = gzip.decompress(page.read_bytes()).decode("utf-8", "replace")
        out += sentences(groff_to_text(source))
    return out


Scorer = Callable[[Sequence[str]], list[list[dict[str, Any]]]]


def traffic_records(
    prompts: Sequence[str],
    start: datetime,
    span: timedelta,
    rng: random.Random,
    *,
    versions: Sequence[str] = ("1",),
    error_rate: float = 0.01,
    latency_ms: float = 120.0,
    sources: Scorer | None = None,
) -> list[dict[str, Any]]:
    """One request record per prompt, spread evenly over `span` from `start`: the response is
    the prompt's next words, latency log-normal around `latency_ms`, 5xx at `error_rate`,
    and `sources` the retrieval hits a scorer gives (none when no scorer)."""
    hits = sources(prompts) if sources else [None] * len(prompts)
    step = span / max(len(prompts), 1)
    rows = []
    for i, (prompt, found) in enumerate(zip(prompts, hits, strict=True)):
        failed = rng.random() < error_rate
        words = prompt.split()
        response = "" if failed else " ".join(words[len(words) // 2 :])
        rows.append(
            {
                "request_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "at": start + i * step,
                "version": versions[i % len(versions)],
                "route": "/v1/completions",
                "status": 500 if failed else 200,
                "latency_ms": round(rng.lognormvariate(0, 0.3) * latency_ms, 3),
                "prompt_tokens": round(len(words) * 1.3),
                "completion_tokens": 0 if failed else round(len(response.split()) * 1.3),
                "prompt": prompt,
                "response": response,
                "error": "model failed" if failed else None,
                "session": None,
                "sources": None if found is None else json.dumps(found),
            }
        )
    return rows


def retrieval_scorer(
    embed: Callable[[Sequence[str]], Any], passages: Sequence[str], top_k: int = 3
) -> Scorer:
    """Sources as the serving retriever logs them (best first, cosine scores), found by exact
    search of `passages` with the same embedder: real scores without a vector store."""
    import numpy as np

    index = np.asarray(embed(passages))

    def score(prompts: Sequence[str]) -> list[list[dict[str, Any]]]:
        sims = np.asarray(embed(prompts)) @ index.T
        best = np.argsort(-sims, axis=1)[:, :top_k]
        return [
            [
                {"doc_id": f"passage-{j}", "source": f"passage-{j}", "score": float(s[j])}
                for j in row
            ]
            for s, row in zip(sims, best, strict=True)
        ]

    return score
