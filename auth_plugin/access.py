"""Who may call what: every route says its scope with `@requires(scope)`, and one middleware admits the caller
(token, scope, rate) before the handler reads anything. A route without it is public (health, metrics, the page).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from auth_plugin.app_keys import AUTHENTICATOR, LIMITER
from auth_plugin.auth import Principal
from auth_plugin.listener import CONNECTIONS
from auth_plugin.rate_limit import RateLimiter
from food_rotation.service_error import ServiceError

Handler = TypeVar("Handler", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])
PRINCIPAL = "principal"  # request[PRINCIPAL]: the admitted caller, for the handlers that record who did what
_SCOPE = "required_scope"


class RateLimited(ServiceError):
    def __init__(self, wait_s: float) -> None:
        super().__init__(429, "rate_limited", "too many requests for this token",
                         {"Retry-After": RateLimiter.retry_after(wait_s)})


def requires(scope: str) -> Callable[[Handler], Handler]:
    """Mark a route's handler: only callers whose token carries `scope` reach it."""
    def mark(handler: Handler) -> Handler:
        setattr(handler, _SCOPE, scope)
        return handler
    return mark


async def admit(request: web.Request, scope: str) -> Principal:
    """The caller's identity, when its token carries `scope` and its rate allows one more request."""
    principal = await request.app[AUTHENTICATOR].authenticate(request.headers, scope)
    wait = request.app[LIMITER].acquire(principal.subject_key)
    if wait > 0:
        raise RateLimited(wait)
    return principal


@web.middleware
async def authorize(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    scope = getattr(request.match_info.handler, _SCOPE, None)
    if scope is not None:
        request[PRINCIPAL] = await admit(request, scope)
        vouch_for_connection(request)
    return await handler(request)


def vouch_for_connection(request: web.Request) -> None:
    """A valid token came on this request's connection: kept alive, it is the last to make room for others."""
    connections = request.app.get(CONNECTIONS)
    if connections is not None:  # None in-process (tests): no listener counts connections there
        connections.vouch(request.protocol)
