"""What every answer goes through: an X-Request-ID, the security headers, the request metrics, and one place that
turns every refusal and every bug into the one JSON error shape (a 4xx naming the problem, or a bare 500)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from auth_plugin.app_keys import METRICS, SERVED_VERSION, SETTINGS
from auth_plugin.auth import AuthError
from auth_plugin.forwarding import UpstreamError
from auth_plugin.log_safety import TracebackLimiter
from food_rotation.service_error import ServiceError

REQUEST_ID = "request_id"

_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# The admin page runs its own script and style files only; it may load images it made itself (blob:) and talk to
# this origin. Sent with every answer: the JSON ones are never meant to be rendered either.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def json_error(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps({"error": error, "message": message, "status": status})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


TRACEBACKS = TracebackLimiter()


@web.middleware
async def request_id_and_errors(request: web.Request,
                                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Every answer carries an X-Request-ID, and every refusal is JSON; one place turns exceptions into answers."""
    incoming = request.headers.get("X-Request-ID", "")
    request[REQUEST_ID] = incoming if _SAFE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    metrics = request.app[METRICS]
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ServiceError as exc:  # every refusal, whoever raised it, in the one JSON shape
        if isinstance(exc, AuthError):
            metrics.auth_failures.labels(exc.reason).inc()
        elif isinstance(exc, UpstreamError):
            metrics.upstream_errors.labels(exc.kind).inc()
        response = json_error(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = json_error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        if exc.status == 408:
            response.force_close()  # the rest of a slow body is not worth waiting for
    except Exception as exc:  # noqa: BLE001 (logged below) a bug must still answer in the one error format
        metrics.internal_errors.labels(type(exc).__name__).inc()
        TRACEBACKS.log(exc, "unexpected failure on %s %s", request.method, request.path)
        response = json_error(500, "internal_error", "the proxy failed to answer; its log has the details")
    response.headers["X-Request-ID"] = request[REQUEST_ID]
    response.headers.update(SECURITY_HEADERS)
    if request.app[SETTINGS].tls and request.app[SETTINGS].hsts_max_age_s > 0:
        response.headers["Strict-Transport-Security"] = f"max-age={request.app[SETTINGS].hsts_max_age_s}"
    resource = request.match_info.route.resource
    route, version = resource.canonical if resource else "unmatched", request.get(SERVED_VERSION, "none")
    metrics.requests.labels(route, str(response.status), version).inc()
    metrics.latency.labels(route, version).observe(time.perf_counter() - started)
    return response
