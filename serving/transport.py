"""HTTP details the routes share: bearer keys, bodies read within a size limit, JSON errors
with the headers their status calls for."""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.responses import JSONResponse

from serving.api import ApiError


def matches(request: Request, key: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), key.encode())


async def read_body(http: Request, limit: int) -> bytes:
    """The body, or 413 as soon as it is known to exceed `limit` bytes: from its declared
    length before anything is read, else while it streams in. Nothing is parsed before."""
    declared = http.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = bytearray()
    async for part in http.stream():
        body += part
        if len(body) > limit:
            raise _too_large(len(body), limit, "at least ")
    return bytes(body)


def _too_large(size: int, limit: int, qualifier: str = "") -> ApiError:
    return ApiError(
        413,
        f"the body has {qualifier}{size:,} bytes; this service accepts at most {limit:,}",
        "request_too_large",
    )


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if error.status == 401:
        headers["www-authenticate"] = "Bearer"
    if error.retry_after_s is not None:
        headers["retry-after"] = str(error.retry_after_s)
    return JSONResponse(error.body(), status_code=error.status, headers=headers)
