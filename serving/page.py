"""The chat page: one static HTML file (no build step) served at `/` and `/chat` without auth.

The page holds no secret: a person types the API key into it, and its requests send the key
to the authorized routes like any client. It streams `/v1/chat/completions`, shows the version,
sources, time taken and `answer_quality`, and rates answers through `/v1/feedback`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

PAGE = Path(__file__).parent / "static" / "chat.html"
# Its inline script and style are the only code it runs; it talks to its own origin only.
HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}


def add_chat_page(app: FastAPI) -> None:
    html = PAGE.read_text(encoding="utf-8")  # once per router start, not per request

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    @app.get("/chat", response_class=HTMLResponse, include_in_schema=False)
    async def chat_page() -> HTMLResponse:
        return HTMLResponse(html, headers=HEADERS)
