"""What reaches the proxy's log is safe to read: no credential in any line, whoever wrote it, and no line forged.

aiohttp's own HTTP parser logs the header line of a malformed request (a token followed by DEL, or by a stray CR
from a token file saved with Windows line endings), so redaction sits at the logging layer, on every handler, and
not in the hope that no library ever logs a header. Request paths are written with non-printables escaped, so
`%0a` cannot start a forged line.
"""

from __future__ import annotations

import logging
import math
import re
import time

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from auth_plugin.database import redact_credentials
from auth_plugin.token_store import PREFIX

log = logging.getLogger("auth_plugin")

REDACTED = "[redacted]"
_TOKEN_SHAPED = re.compile(
    rf"{re.escape(PREFIX)}[A-Za-z0-9_\-]+"  # our opaque tokens
    r"|eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*"  # a JWT (its header always starts {" -> eyJ)
    r"|(?<=[Bb]earer )[^\s,;\"']+"  # whatever follows "Bearer ": TorchServe's 8-character keys too
    r"|(?<=access_token: )[^\s,;\"']+"
)


def redact(text: str) -> str:
    """Tokens, keys, and a database URL's user:password (auth_plugin/database.py) masked."""
    return redact_credentials(_TOKEN_SHAPED.sub(REDACTED, text))


def printable(text: str) -> str:
    """`text` with every non-printable character written as an escape (a newline as \\n)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class RedactTokens(logging.Filter):
    """Rewrites each record's message and traceback with every token-shaped string masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(root: logging.Logger | None = None) -> None:
    """Put the filter on every handler of the root logger (records of every library pass through them)."""
    for handler in (root or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactTokens) for f in handler.filters):
            handler.addFilter(RedactTokens())


class TracebackLimiter:
    """One traceback per kind of exception every `every_s`; the rest are one line each. A caller who can trigger
    a bug at 1,000 requests/s must not also fill the disk with its tracebacks (23 MB in 10 s, issue 12)."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def log(self, exc: BaseException, message: str, *args: object) -> None:
        kind, now = type(exc).__name__, time.monotonic()
        if now - self._last.get(kind, -math.inf) >= self.every_s:
            self._last[kind] = now
            log.error(message, *args, exc_info=exc)
        else:
            log.error(message + " (%s again; its traceback was logged in the last %.0f s)", *args, kind, self.every_s)


class AccessLogger(AbstractAccessLogger):
    """Method, path without its query (non-printables escaped: no forged lines), status, size, time and request id:
    never a header, so never a token."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %s %s %.1fms rid=%s", request.remote, request.method, printable(request.path),
                         response.status, response.body_length, time * 1000,
                         response.headers.get("X-Request-ID", "-"))
