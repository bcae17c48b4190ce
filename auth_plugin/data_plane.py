"""The data plane: a token holder's prediction, routed to the default or the canary, forwarded to TorchServe with
its key, counted as that version's evidence when the router chose it, and given an answer id.

    POST /predictions/{model}             the router picks the version (default, or the canary by its share)
    POST /predictions/{model}/{version}   that version, served but counted as no one's evidence
"""

from __future__ import annotations

import re
import time

from aiohttp import web

from auth_plugin.access import requires
from auth_plugin.answer_verdict import trusted_by_the_archive, verdict_of
from auth_plugin.app_keys import KEYS, METRICS, RECEIPTS, REGISTRY, SERVED_VERSION, SESSION, SETTINGS, SIGNALS, STREAMS
from auth_plugin.forwarding import UpstreamError, forward, forwarded_headers, forwarded_query
from auth_plugin.middleware import REQUEST_ID
from food_rotation.service_error import ServiceError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@requires("predict")
async def predict(request: web.Request) -> web.Response:
    started = time.perf_counter()
    app = request.config_dict
    settings = app[SETTINGS]
    model, version = request.match_info["model"], request.match_info.get("version")
    registry = app[REGISTRY]
    if model != settings.model_name:  # answered before anything is cached or counted under the name
        raise ServiceError(404, "unknown_model", f"this service serves {settings.model_name!r}; "
                                                 f"there is no model {model[:40]!r}")
    if version is not None and not (_NAME.fullmatch(version) and registry.knows(model, version)):
        raise ServiceError(404, "unknown_version", f"{model} has no version {version[:40]!r} "
                                                   f"(GET /admin/models/{model} lists them)")
    routed = version is None
    async with app[STREAMS].body(request, settings.max_body_bytes, settings.body_timeout_s) as body:
        version = version or registry.choose(model)  # an explicit version, so drains know what is in flight
        request[SERVED_VERSION] = version or "none"
        path = f"/predictions/{model}" + (f"/{version}" if version else "")
        try:
            with registry.in_flight(model, version):
                answer = await forward(app[SESSION], app[KEYS], settings.inference_url.rstrip("/") + path, body,
                                       forwarded_headers(request.headers, request[REQUEST_ID]),
                                       forwarded_query(request.query))
        except UpstreamError as exc:
            if routed:
                app[SIGNALS].prediction(request[SERVED_VERSION], exc.status, time.perf_counter() - started, None)
            raise
    content_type = answer.headers.pop("Content-Type", "application/json").split(";")[0]
    verdict = verdict_of(answer.status, content_type, answer.headers, answer.body)
    if routed:  # only what the router sent a version is its evidence: a caller naming a version proves nothing
        app[SIGNALS].prediction(request[SERVED_VERSION], answer.status, time.perf_counter() - started,
                                trusted_by_the_archive(answer.headers, verdict))
    if verdict is not None:
        app[METRICS].confidence.labels(request[SERVED_VERSION]).observe(verdict[0])
        if not verdict[1]:
            app[METRICS].unsure.labels(request[SERVED_VERSION]).inc()
    response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
    response.content_type = content_type
    if routed and verdict is not None and verdict.model_degree is not None:  # what a correction quotes to count
        response.headers["X-Answer-Id"] = app[RECEIPTS].issue(request[SERVED_VERSION], verdict.model_degree)
    return response


def data_plane_app() -> web.Application:
    """/predictions (mounted there), with the predict scope."""
    app = web.Application()
    app.router.add_post("/{model}", predict)
    app.router.add_post("/{model}/{version}", predict)
    return app
