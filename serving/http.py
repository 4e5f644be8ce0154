"""The router's HTTP side: FastAPI routes, auth, version choice, and for every generation
request (answered, refused or failed) a request-log row and a metrics observation; feedback on
answers goes into the feedback log, durable before it is acknowledged."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from serving.api import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    FeedbackRequest,
    FeedbackStored,
    Generation,
    StreamStart,
    WeightsUpdate,
    new_id,
    parse_request,
    response,
)
from serving.page import add_chat_page
from serving.record import Record, complete
from serving.shadow import Mirror
from serving.sse import DONE, final_extensions, sse, stream_chunk
from serving.tracing import annotate, carrier, context_of, span
from serving.transport import error_response, matches, read_body
from tasks.core.routing import SESSION_HEADER, VERSION_HEADER, UnknownVersion, choose_version

logger = logging.getLogger(__name__)


class Gateway:
    def __init__(self, router: Any) -> None:
        self.router = router  # weights change under us (reconfigure): read them per request
        self.mirror = Mirror(self)

    def authorize(self, request: Request) -> None:
        key = self.router.api_key
        if key is not None and not matches(request, key):
            raise ApiError(
                401,
                "a valid API key is required: Authorization: Bearer <key>",
                "invalid_api_key",
                "authentication_error",
            )

    def authorize_admin(self, request: Request) -> None:
        """Only the admin key moves traffic: a caller's key is refused, and without an admin
        key the admin API is off (never an open door to the traffic split)."""
        admin = self.router.admin_key
        if admin is None:
            raise ApiError(
                403,
                "the admin API is off: set LLMOPS_SERVING_ADMIN_KEY",
                "admin_disabled",
                "permission_error",
            )
        if matches(request, admin):
            return
        caller = self.router.api_key is not None and matches(request, self.router.api_key)
        raise ApiError(
            403 if caller else 401,
            "a caller's key cannot change the traffic split: use the admin key"
            if caller
            else "the admin key is required: Authorization: Bearer <admin key>",
            "not_admin" if caller else "invalid_api_key",
            "permission_error" if caller else "authentication_error",
        )

    async def generate(self, kind: type, http: Request) -> Response:
        rec = Record(new_id(kind), http.url.path)
        with span("request", {"route": rec.route, "request_id": rec.request_id}) as root:
            rec.trace = carrier()  # the parent of what ends after the response starts
            answer = await self._generate(kind, http, rec)
            annotate(root, version=rec.version, status=rec.status)
            return answer

    async def _generate(self, kind: type, http: Request, rec: Record) -> Response:
        streaming = False
        try:
            with span("authenticate"):
                self.authorize(http)
                req = parse_request(kind, await read_body(http, self.router.max_body_bytes))
            rec.prompt = req.question
            if req.model not in (None, self.router.model_name):
                raise ApiError(
                    404,
                    f"model {req.model!r} is not served here; this service "
                    f"serves {self.router.model_name!r}",
                    "model_not_found",
                )
            rec.session = http.headers.get(SESSION_HEADER) or req.user
            pinned = http.headers.get(VERSION_HEADER)
            with span("route"):
                rec.version = self.choose(pinned, rec.session)
            server = self.router.servers[rec.version]
            if pinned is None:  # live traffic only: pinned requests ask one version on purpose
                self.mirror.send(req, rec.version, rec)
            with span("model", {"version": rec.version, "stream": req.stream}):
                req.trace = carrier()  # the replica's spans continue this trace
                if req.stream:
                    events = server.options(stream=True).stream.remote(req)
                    first = await events.__anext__()
                else:
                    out = await complete(server, req)
            if req.stream:
                if isinstance(first, ApiError):
                    raise first
                streaming = True
                return StreamingResponse(
                    self.events(req, rec, first, events),
                    media_type="text/event-stream",
                    headers={**rec.headers(), "cache-control": "no-cache"},
                )
            if isinstance(out, ApiError):
                raise out
            rec.answered(out)
            body = response(req, out, rec.request_id, self.router.model_name, rec.version)
            return JSONResponse(body.model_dump(), headers=rec.headers())
        except ApiError as error:
            rec.refused(error)
            return error_response(error, rec.headers())
        except Exception as exc:  # a replica failed: answer, keep serving, record it
            logger.exception("request %s failed on version %s", rec.request_id, rec.version)
            error = ApiError(
                503, f"version {rec.version} failed: {type(exc).__name__}", "model_unavailable"
            )
            rec.refused(error)
            return error_response(error, rec.headers())
        finally:
            if not streaming:  # a stream is recorded when it ends
                await self.finish(rec)

    def choose(self, pinned: str | None, session: str | None) -> str:
        try:
            draw = random.random()  # routing's one source of chance, outside the pure rule
            return choose_version(self.router.weights, key=session, pinned=pinned, draw=draw)
        except UnknownVersion as exc:
            raise ApiError(404, str(exc), "version_not_found") from None

    async def events(
        self, req: Any, rec: Record, start: StreamStart, events: Any
    ) -> AsyncIterator[str]:
        args = (req, rec.request_id, self.router.model_name, rec.version)
        rec.prompt_tokens = start.prompt_tokens
        try:
            if isinstance(req, ChatRequest):
                yield stream_chunk(*args, "")  # the role comes first
            async for event in events:
                if isinstance(event, str):
                    yield stream_chunk(*args, event)
                elif isinstance(event, ApiError):  # after some text: the deadline passed
                    rec.refused(event)
                    yield sse(event.body())
                elif isinstance(event, Generation):
                    rec.answered(event)
                    extra = final_extensions(event)
                    yield stream_chunk(*args, None, event.finish_reason, extra)
            yield DONE
        except (asyncio.CancelledError, GeneratorExit):
            rec.status, rec.error = 499, "the client went away during the stream"
            raise
        except Exception as exc:  # headers are sent: the error goes into the stream
            logger.exception("stream %s failed on version %s", rec.request_id, rec.version)
            error = ApiError(500, f"the stream failed: {type(exc).__name__}", "stream_failed")
            rec.refused(error)
            yield sse(error.body())
            yield DONE
        finally:
            await self.finish(rec)

    async def finish(self, rec: Record) -> None:
        latency = time.perf_counter() - rec.started
        rec.count(self.router.metrics, latency)
        try:  # fsynced: off the event loop
            with span("log", parent=context_of(rec.trace)):
                await asyncio.to_thread(self.router.log.append, rec.row(latency))
        except Exception:  # the answer stands; the failure is loud in the replica's log
            logger.exception("request %s could not be written to the request log", rec.request_id)

    async def feedback(self, http: Request) -> Response:
        """Store one rating (fsynced) and say so; a refused one stores nothing. The request id
        is not looked up: feedback may come before its request reaches parquet, and one whose
        request the log does not hold is reported as such by the monitor, not lost here."""
        try:
            self.authorize(http)
            req = parse_request(FeedbackRequest, await read_body(http, self.router.max_body_bytes))
            row = {"feedback_id": new_id(FeedbackRequest), "at": datetime.now(UTC)}
            row |= req.model_dump()
            try:
                await asyncio.to_thread(self.router.feedback.append, row)
            except ValueError as exc:  # text the log cannot hold (a lone surrogate)
                raise ApiError(422, str(exc), "invalid_request") from None
            except Exception as exc:
                logger.exception("feedback on %s could not be stored", req.request_id)
                raise ApiError(
                    503, f"feedback could not be stored: {type(exc).__name__}", "storage_failed"
                ) from None
        except ApiError as error:
            return error_response(error)
        stored = FeedbackStored(id=row["feedback_id"], request_id=req.request_id)
        return JSONResponse(stored.model_dump())

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        async def probe(handle: Any) -> dict[str, Any] | None:
            try:
                return await asyncio.wait_for(handle.ready.remote(), timeout=5)
            except Exception:
                return None

        servers = self.router.servers
        states = await asyncio.gather(*(probe(h) for h in servers.values()))
        versions = dict(zip(servers, states, strict=True))
        return all(versions.values()), versions

    async def flush_periodically(self) -> None:
        """Parquet is what monitoring reads: do not let quiet hours keep rows in the WAL."""
        while True:
            await asyncio.sleep(self.router.log_flush_s)
            for log in (self.router.log, self.router.feedback):
                try:
                    await asyncio.to_thread(log.flush)
                except Exception:
                    logger.exception("%s flush failed; retrying later", log.kind.name)


def http_app(router: Any) -> FastAPI:
    gateway = Gateway(router)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        background = [asyncio.create_task(gateway.flush_periodically())]
        if router.follower is not None:
            background.append(asyncio.create_task(router.follower.run()))
        yield
        for task in background:
            task.cancel()

    app = FastAPI(title="llmops serving", summary="OpenAI-compatible, versioned", lifespan=lifespan)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await gateway.generate(CompletionRequest, request)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await gateway.generate(ChatRequest, request)

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> Response:
        return await gateway.feedback(request)

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        try:
            gateway.authorize(request)
        except ApiError as error:
            return error_response(error)
        versions = [{"version": v, "weight": router.weights.get(v, 0.0)} for v in router.servers]
        model = {
            "id": router.model_name,
            "object": "model",
            "owned_by": "llmops",
            "versions": versions,
            "shadow": router.shadow,
        }
        if router.follower is not None:  # what the registry's aliases say is served
            model["following"] = router.follower.describe()
        return JSONResponse({"object": "list", "data": [model]})

    @app.post("/admin/weights")
    async def admin_weights(request: Request) -> Response:
        try:
            gateway.authorize_admin(request)
            update = parse_request(WeightsUpdate, await request.body())
            try:
                weights = await router.set_weights(update.weights)
            except ValueError as exc:
                raise ApiError(422, str(exc), "invalid_weights") from None
        except ApiError as error:
            return error_response(error)
        return JSONResponse({"weights": weights})

    add_chat_page(app)  # GET / and /chat, without auth: the page holds no secret

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        ready, versions = await gateway.readiness()
        return JSONResponse(
            {"ready": ready, "versions": versions}, status_code=200 if ready else 503
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = router.metrics.render()
        return Response(body, media_type=content_type)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:  # unknown path, method
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, str(exc.detail), code))

    return app
