"""The HTTP contract: OpenAI-compatible requests and responses and JSON errors (a stream's SSE
events: `serving.sse`).

Extensions to the OpenAI shapes: requests take `rag`, `top_k` and `deadline_s`; responses
carry `version` (the registry version that answered), `sources` (the passages put into the
prompt, with their text), `answer_quality` (whether the text is usable at all) and `rails`
(each decision of the rails on this request: `[{"rail": "input"|"retrieval"|"output", "action":
"block"|"redact"|"drop"|"neutralise", "reason": "injection:ignore_instructions"}, ...]`, empty
when none acted); a stream's last event carries the last three too. A request the input rail
blocks, or an answer the output rail refuses (it echoes the system prompt), is answered with
`REFUSAL` and `finish_reason: "content_filter"` (OpenAI's value); a redacted answer keeps its
finish reason. `POST /v1/feedback` (not OpenAI's) rates an answer by its request id.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    ValidationError,
    field_validator,
)

from tasks.clients.request_schema import RATINGS
from tasks.core.answer_quality import answer_quality


class ApiError(Exception):
    """A request the service refuses, with its HTTP status and OpenAI-style type and code."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        kind: str = "",
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")
        self.retry_after_s = retry_after_s  # a 429's or 503's Retry-After

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "code": self.code}}

    def __reduce__(self) -> tuple[Any, ...]:  # model deployments return it to the router
        args = (self.status, self.message, self.code, self.kind, self.retry_after_s)
        return (ApiError, args)


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


class _Request(BaseModel):
    # Unknown OpenAI fields (n, top_p, ...) are ignored rather than refused: clients send them.
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="The served model's name; empty = that one.")
    max_tokens: int | None = Field(None, ge=1, description="Capped at the server's maximum.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 decodes greedily.")
    stream: bool = False
    user: str | None = Field(None, description="Caller id: the same user gets the same version.")
    top_k: int | None = Field(
        None,
        ge=1,
        le=20,
        description="Passages retrieved when `rag` is on; default: the release's.",
    )
    deadline_s: float | None = Field(
        None,
        gt=0,
        description="Seconds the server may spend on this answer (capped at its own "
        "deadline); when they pass, the answer ends with 504 deadline_exceeded.",
    )

    # The router's trace context for the replica's spans (`serving.tracing`): set by the
    # router, never read from a body.
    _trace: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def trace(self) -> dict[str, str]:
        return self._trace

    @trace.setter
    def trace(self, found: dict[str, str]) -> None:
        self._trace = found


class CompletionRequest(_Request):
    prompt: str = Field(min_length=1)
    rag: bool = Field(False, description="Answer from retrieved passages (off by default).")

    _check_prompt = field_validator("prompt")(_not_blank)

    @property
    def question(self) -> str:
        return self.prompt


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(_Request):
    messages: list[Message] = Field(min_length=1)
    rag: bool | None = Field(
        None,
        description="Retrieve passages for the last user message; empty = on, and then while "
        "nothing is indexed the answer comes without them.",
    )

    @field_validator("messages")
    @classmethod
    def _ends_with_a_question(cls, messages: list[Message]) -> list[Message]:
        if messages[-1].role != "user" or not messages[-1].content.strip():
            raise ValueError("the last message must be a non-empty user message")
        return messages

    @property
    def question(self) -> str:
        return self.messages[-1].content


GenerationRequest = CompletionRequest | ChatRequest


class WeightsUpdate(BaseModel):
    """`POST /admin/weights`: {version: weight}, in routing order (the challenger first)."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] = Field(min_length=1)


def _none_if_blank(text: str | None) -> str | None:
    return text if text is None or text.strip() else None


class FeedbackRequest(BaseModel):
    """`POST /v1/feedback`: a person's rating of one answer, by the request id the answer came
    with (its `id`, also the `x-llmops-request-id` header). A thumbs up or down (-1 or 1): what
    a chat UI asks for in one click; a correction says what the answer should have been, and
    becomes a golden-set candidate that a person approves (`llmops golden approve`)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt "corection" must not vanish

    request_id: str = Field(min_length=1, max_length=200)
    rating: StrictInt = Field(description="1 (good) or -1 (bad).")
    correction: str | None = Field(
        None, max_length=20_000, description="The answer it should have been; blank = none."
    )
    comment: str | None = Field(None, max_length=4_000, description="Blank = none.")
    user: str | None = Field(None, max_length=200, description="Who rated it; blank = unknown.")

    _check_request_id = field_validator("request_id")(_not_blank)
    _blank_is_none = field_validator("correction", "comment", "user")(_none_if_blank)

    @field_validator("rating")
    @classmethod
    def _thumbs(cls, rating: int) -> int:
        if rating not in RATINGS:
            raise ValueError(f"must be one of {RATINGS}: 1 (good) or -1 (bad)")
        return rating


class FeedbackStored(BaseModel):
    id: str
    request_id: str
    stored: Literal[True] = True


def parse_request(kind: type[BaseModel], raw: bytes) -> Any:
    """The validated request, or an ApiError: 400 for malformed JSON, 422 for a wrong shape."""
    try:
        return kind.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        if any(e["type"] == "json_invalid" for e in errors) or not raw.strip():
            raise ApiError(
                400, f"the body is not valid JSON: {errors[0]['msg']}", "invalid_json"
            ) from None
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors)
        raise ApiError(422, detail, "invalid_request") from None


class Source(BaseModel):
    """A passage put into the prompt: its document, source, retrieval score and its text as
    the prompt holds it (what an answer's groundedness is judged against)."""

    doc_id: str
    source: str
    score: float
    text: str
    citation: str = ""  # "handbook.pdf, page 12"; the source itself when it has no location
    page: int | None = None
    section: str | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RailDecision(BaseModel):
    """One rail acting on the request (`tasks.core.rails.Decision`): which rail, what it did
    and why (`<category>:<kind>`)."""

    rail: Literal["input", "retrieval", "output"]
    action: Literal["block", "redact", "drop", "neutralise"]
    reason: str


class Generation(BaseModel):
    """What a model deployment returns for one request (the router adds the envelope)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length", "content_filter"]
    sources: list[Source] = []
    rails: list[RailDecision] = []
    # Where the time went in the replica (the request log's columns; not in the response).
    queue_ms: float | None = None
    ttft_ms: float | None = None
    decode_tokens_per_s: float | None = None

    def usage(self) -> Usage:
        total = self.prompt_tokens + self.completion_tokens
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=total,
        )


class StreamStart(BaseModel):
    """The first event of a streamed answer; text deltas (str) and a final Generation follow."""

    prompt_tokens: int
    sources: list[Source] = []


class AnswerQuality(BaseModel):
    """`degenerate`: the answer is empty (`reason` "empty") or loops on one token ("repetition"),
    as an untrained model answers; a client then shows the passages instead. `detail` says what
    was seen."""

    degenerate: bool
    reason: Literal["empty", "repetition"] | None = None
    detail: str | None = None

    @classmethod
    def of(cls, text: str) -> AnswerQuality:
        quality = answer_quality(text)
        return cls(degenerate=quality.degenerate, reason=quality.reason, detail=quality.detail)


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str | None
    logprobs: None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: Message
    finish_reason: str | None


class _Response(BaseModel):
    id: str
    created: int
    model: str
    usage: Usage
    version: str
    sources: list[Source]
    answer_quality: AnswerQuality
    rails: list[RailDecision]


class CompletionResponse(_Response):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class ChatResponse(_Response):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]


def new_id(kind: type[BaseModel]) -> str:
    prefix = {ChatRequest: "chatcmpl", FeedbackRequest: "fb"}.get(kind, "cmpl")
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def response(
    request: GenerationRequest, out: Generation, rid: str, model: str, version: str
) -> _Response:
    common = {
        "id": rid,
        "created": int(time.time()),
        "model": model,
        "usage": out.usage(),
        "version": version,
        "sources": out.sources,
        "answer_quality": AnswerQuality.of(out.text),
        "rails": out.rails,
    }
    if isinstance(request, ChatRequest):
        message = Message(role="assistant", content=out.text)
        choice = ChatChoice(message=message, finish_reason=out.finish_reason)
        return ChatResponse(choices=[choice], **common)
    return CompletionResponse(
        choices=[CompletionChoice(text=out.text, finish_reason=out.finish_reason)], **common
    )
