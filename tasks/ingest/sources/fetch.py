"""GET with the manners a crawler owes a server: retried after a timeout, a dropped
connection, a 5xx or a 429 (backing off, honouring a short Retry-After), refused by content
type or declared length before the body is read, and cut off when it streams past a limit.
Every failure is a `Failed` whose message is the reason a record is quarantined with."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

MAX_RETRY_AFTER_S = 5.0  # a longer Retry-After is capped: one page is not worth more
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)


class Failed(Exception):
    """A fetch that did not succeed: `problem` is the record's reason."""

    def __init__(self, problem: str, status: int | None = None) -> None:
        super().__init__(problem)
        self.problem, self.status = problem, status


@dataclass(frozen=True)
class Body:
    ctype: str  # the media type, lower case, without parameters
    charset: str | None  # from the Content-Type header
    data: bytes


def get(
    client: httpx.Client,
    url: str,
    *,
    retries: int,
    limit: int,
    accept: Callable[[str], bool] | None = None,
    pace: Callable[[], None] | None = None,
    truncate: bool = False,
) -> Body:
    """GET `url`, `retries` more times after a timeout, a dropped connection, a 5xx or a 429
    (waiting 0.5 s, 1 s, …); raises `Failed` with the reason when it gives up. `accept` says
    which media types are worth reading, `pace` waits for the host's turn before each try."""
    attempts = retries + 1
    for attempt in range(1, attempts + 1):
        wait, last = 0.5 * 2 ** (attempt - 1), attempt == attempts
        if pace:
            pace()
        try:
            with client.stream("GET", url) as r:
                status = r.status_code
                if status == 429 or status >= 500:
                    if last:
                        raise Failed(f"HTTP {status} after {attempts} attempts", status)
                    wait = max(wait, _retry_after(r))
                elif not r.is_success:
                    raise Failed(f"HTTP {status}", status)
                else:
                    return _body(r, accept, limit, truncate)
        except httpx.TimeoutException:
            if last:
                timeout = client.timeout.read or 0
                raise Failed(f"timed out after {timeout:g} s ({attempts} attempts)") from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as e:
            raise Failed(f"invalid URL: {e}") from None
        except httpx.TooManyRedirects:
            raise Failed("too many redirects") from None
        except httpx.DecodingError as e:
            raise Failed(f"undecodable response: {e}") from None
        except httpx.TransportError as e:
            if last:
                raise Failed(f"unreachable: {e or type(e).__name__}") from None
        time.sleep(wait)
    raise AssertionError("unreachable")


def decode(body: Body) -> str:
    """The header's charset, else a `<meta charset>` of an HTML page, else UTF-8 when the bytes
    are UTF-8, else windows-1252 (what browsers assume for unlabelled Western pages)."""
    meta = _META_CHARSET.search(body.data[:2048]) if body.ctype != "text/plain" else None
    for charset in (body.charset, meta and meta.group(1).decode("ascii")):
        if charset:
            try:
                return body.data.decode(charset, "replace")
            except LookupError:  # a charset Python does not know: try the next way
                pass
    try:
        return body.data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return body.data.decode("cp1252", "replace")


def _body(
    r: httpx.Response, accept: Callable[[str], bool] | None, limit: int, truncate: bool
) -> Body:
    """The body, refused before it is read when its type or its declared length is wrong,
    and while it streams when it grows over `limit` (then cut there when `truncate`)."""
    ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
    if accept is not None and not accept(ctype):
        raise Failed(f"unsupported content type: {ctype or '(none)'}")
    too_large = Failed(f"too large: over the {limit} byte limit")
    length = r.headers.get("content-length", "")
    if not truncate and length.isdigit() and int(length) > limit:
        raise too_large
    data = bytearray()
    for chunk in r.iter_bytes():
        data += chunk
        if len(data) > limit:
            if not truncate:
                raise too_large
            del data[limit:]
            break
    return Body(ctype, r.charset_encoding, bytes(data))


def _retry_after(r: httpx.Response) -> float:
    """A Retry-After in seconds, at most `MAX_RETRY_AFTER_S`; 0 when absent or an HTTP date."""
    try:
        return min(max(float(r.headers.get("retry-after", "")), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return 0.0
