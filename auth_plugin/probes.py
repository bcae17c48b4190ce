"""The routes a platform probes without a token: liveness (the gateway's own event loop), readiness (TorchServe
and the default version's workers, cached: readiness.py) and the Prometheus metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from auth_plugin.app_keys import METRICS, READINESS, REGISTRY, SETTINGS, TORCHSERVE
from auth_plugin.control.actual.torchserve_admin import ManagementError
from auth_plugin.proxy_metrics import ProxyMetrics


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    body, status = await request.app[READINESS].answer()
    return web.json_response(body, status=status)


def readiness_check(app: web.Application) -> Callable[[], Awaitable[tuple[dict[str, Any], int]]]:
    """Ready when TorchServe answers and every version the routing table sends traffic to (the default, and a
    canary with a share) has a live worker here and has passed this pod's gate: a new pod converges to the
    table's state before the Service sends it anything."""
    async def check() -> tuple[dict[str, Any], int]:
        model, registry = app[SETTINGS].model_name, app[REGISTRY]
        route = registry.route(model)
        try:
            live = await app[TORCHSERVE].live_workers(model, route.default if route else None, 2.0)
        except ManagementError as exc:
            return {"status": "unavailable", "reason": exc.message}, 503
        routed = [] if route is None else [route.default, *([route.canary] if route.canary else [])]
        converging = [version for version in routed if not registry.serving(model, version)]
        if not live or converging:
            return {"status": "no_live_workers" if not live else "converging", "workers": live,
                    "waiting_for": converging}, 503
        return {"status": "ready", "workers": live}, 200
    return check


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": ProxyMetrics.content_type})
