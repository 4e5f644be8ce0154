"""An optional LLM judge: any OpenAI-compatible chat endpoint (`judge_url` in settings), asked
to grade each answer's faithfulness and relevance with a prompt versioned in MLflow's prompt
registry (`llmops-judge`, registered from `tasks.core.judging.JUDGE_TEMPLATE` on first use; the
latest version is used and recorded with each judged evaluation).

A judge that is down, slow or says something unreadable never stops an evaluation: the judged
metrics of that answer are missing with the reason. After `GIVE_UP_AFTER` failed calls in a
row the judge is not asked again in that evaluation (a dead endpoint would otherwise cost one
timeout per question); a judge that refuses one prompt (a 4xx, say too long) is asked the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from tasks.core.judging import (
    JUDGE_PROMPT,
    JUDGE_TEMPLATE,
    Judged,
    check_template,
    judge_variables,
    not_judged,
    parse_reply,
    render,
)
from tasks.core.scorers import Answer, Example
from tasks.shared.settings import Settings

MAX_TOKENS = 24  # two short lines
GIVE_UP_AFTER = 3


class JudgeUnavailable(RuntimeError):
    """One judge call that gave no reply to read. `down`: unreachable, timed out or a server
    error (what makes the judge give up); else it refused this one prompt (4xx, bad body)."""

    def __init__(self, reason: str, down: bool = True) -> None:
        super().__init__(reason)
        self.down = down


@dataclass(frozen=True)
class JudgePrompt:
    """The registered prompt version the judge is asked with."""

    uri: str  # prompts:/llmops-judge/<version>
    version: int
    template: str
    raw: Any  # MLflow's PromptVersion (to link it to a run)


class Judge:
    def __init__(self, settings: Settings) -> None:
        if not settings.judge_url:
            raise ValueError("no judge endpoint: set LLMOPS_JUDGE_URL")
        self.settings = settings
        base = settings.judge_url.rstrip("/")
        self.url = base if base.endswith("/v1") else f"{base}/v1"
        self.model = settings.judge_model
        self.timeout_s = settings.judge_timeout_s

    @property
    def label(self) -> str:
        return f"{self.model or 'default model'} at {self.url}"

    def prompt(self) -> JudgePrompt:
        """The latest version of the judge prompt, registered from the template in code when
        there is none yet. A version using variables the judge does not fill is refused."""
        import mlflow.genai

        from tasks.clients.tracking import connect

        connect(self.settings)
        uri = f"prompts:/{JUDGE_PROMPT}@latest"
        # cache_ttl_seconds=0: a version registered a moment ago is the one used
        found = mlflow.genai.load_prompt(uri, allow_missing=True, cache_ttl_seconds=0)
        if found is None:
            found = mlflow.genai.register_prompt(
                JUDGE_PROMPT,
                JUDGE_TEMPLATE,
                commit_message="The platform's judge prompt (faithfulness, relevance).",
                tags={"registered_by": "llmops"},
            )
        template = found.template
        if not isinstance(template, str):
            raise ValueError(f"{found.uri}: the judge prompt must be a text template, not chat")
        try:
            check_template(template)
        except ValueError as exc:
            raise ValueError(f"{found.uri}: {exc}") from None
        return JudgePrompt(found.uri, int(found.version), template, found)

    def judge(
        self, prompt: JudgePrompt, examples: Sequence[Example], answers: Sequence[Answer]
    ) -> list[dict[str, Judged]]:
        """Each answer's judged metrics (an answer that failed is not judged: its reason)."""
        key = self.settings.judge_api_key
        headers = {"authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        rows: list[dict[str, Judged]] = []
        failures, last = 0, ""
        with httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout_s) as client:
            for example, answer in zip(examples, answers, strict=True):
                if answer.error is not None:
                    rows.append(not_judged(f"no answer to judge: {answer.error}"))
                    continue
                if failures >= GIVE_UP_AFTER:
                    reason = f"judge not asked: its last {failures} calls failed ({last})"
                    rows.append(not_judged(reason))
                    continue
                variables = judge_variables(example.question, answer.text, answer.passages)
                try:
                    reply = self.ask(client, render(prompt.template, variables))
                except JudgeUnavailable as exc:
                    rows.append(not_judged(str(exc)))
                    failures, last = (failures + 1, str(exc)) if exc.down else (0, last)
                    continue
                failures = 0
                rows.append(parse_reply(reply))
        return rows

    def ask(self, client: httpx.Client, text: str) -> str:
        """The judge's reply to one prompt (greedy, short)."""
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": text}],
            "temperature": 0,
            "max_tokens": MAX_TOKENS,
        }
        if self.model:
            body["model"] = self.model
        try:
            response = client.post("/chat/completions", json=body)
        except httpx.TimeoutException:
            raise JudgeUnavailable(
                f"judge timed out after {self.timeout_s:g} s ({self.url})"
            ) from None
        except httpx.HTTPError as exc:
            raise JudgeUnavailable(
                f"judge unreachable ({self.url}): {type(exc).__name__}: {exc}"[:300]
            ) from None
        if response.status_code != 200:
            said = " ".join(response.text.split())[:200]
            status = response.status_code
            raise JudgeUnavailable(f"judge answered HTTP {status}: {said}", down=status >= 500)
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise JudgeUnavailable(
                f"judge's response is not a chat completion ({type(exc).__name__})", down=False
            ) from None
        if not isinstance(content, str):
            raise JudgeUnavailable("judge's response has no text content", down=False)
        return content
