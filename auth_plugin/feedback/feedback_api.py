"""Corrections in, datasets out: the feedback loop over HTTP.

    POST   /feedback                               (predict) the photo + "true_degree" [+ "answer_id", the
                                                   prediction's X-Answer-Id; or "model_degree", "model_version"
                                                   as the caller says]: the same input forms as a prediction
                                                   (raw body with the fields as query parameters, multipart
                                                   form fields, or JSON {"image": "<base64>", ...})
    GET    /datasets                               (admin) every dataset with its counts per class
    POST   /datasets                               (admin) {"name": optional}: close the active one, start anew
    GET    /datasets/{name}                        (admin) one dataset and its photos
    GET    /datasets/{name}/photos/{sha256}        (admin) the stored upright photo (JPEG)
    GET    /datasets/{name}/photos/{sha256}/thumbnail
    DELETE /datasets/{name}/photos/{sha256}        (admin) remove one photo

The photo is parsed by the handler's own `request_payload`, so what predicts also corrects, and refused with the
same 4xx codes. Only a correction quoting an answer id the gateway issued (auth_plugin/answer_receipts.py), once,
counts in its version's signals (what the canary analysis reads), with the version and turn the id vouches for;
any other is stored for training all the same ("evidence": false in the answer).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from aiohttp import web

from auth_plugin.access import PRINCIPAL, requires
from auth_plugin.answer_receipts import Answered
from auth_plugin.app_keys import DATASETS, HELD_OUT, METRICS, RECEIPTS, REGISTRY, SETTINGS, SIGNALS, UPLOADS
from auth_plugin.auth import Principal
from auth_plugin.bodies import read_body, read_json_object
from auth_plugin.database import AdvisoryLock
from auth_plugin.feedback.datasets import Correction, DatasetError, DatasetStore, Quota
from auth_plugin.feedback.gate_photos import HeldOutCorrections
from auth_plugin.migrations import open_database
from auth_plugin.settings import ProxySettings
from food_rotation.photo_io import TURNS
from food_rotation.request_payload import multipart_fields, parse_payload
from food_rotation.service_error import ServiceError

FIELDS = ("true_degree", "model_degree", "model_version", "answer_id")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


def parse_degree(value: object, field: str, required: bool) -> int | None:
    """0/90/180/270 as a number or a string; ServiceError(400) naming the field otherwise."""
    if value is None or value == "":
        if required:
            raise ServiceError(400, f"missing_{field}", f"give \"{field}\": one of 0, 90, 180, 270")
        return None
    text = str(value).strip()
    if isinstance(value, bool) or text not in {str(d) for d in TURNS}:
        raise ServiceError(400, f"invalid_{field}", f"\"{field}\" must be one of 0, 90, 180, 270; got {text[:20]!r}")
    return int(text)


def parse_feedback(body: bytes, content_type: str, query: Mapping[str, str]) -> tuple[bytes, dict[str, Any]]:
    """(image bytes, the correction's fields); form or JSON fields win over query parameters."""
    media_type = content_type.split(";")[0].strip().lower()
    part_types: dict[str, str] = {}
    fields: dict[str, Any] = {name: query[name] for name in FIELDS if name in query}
    if media_type == "multipart/form-data":
        item, part_types = multipart_fields(body, content_type)
        fields.update({name: item[name] for name in FIELDS if name in item})
    elif media_type == "application/json":
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise ServiceError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
        item = {"body": document}
        if isinstance(document, dict):
            fields.update({name: document[name] for name in FIELDS if name in document})
    else:
        item = {"body": body}
    image = parse_payload(item, content_type, part_types=part_types).image
    version = fields.get("model_version")
    if version is not None and (not isinstance(version, str) or not _VERSION.fullmatch(version)):
        raise ServiceError(400, "invalid_model_version", "\"model_version\" must look like 1.0 (letters, digits, ._-)")
    answer_id = fields.get("answer_id")
    if answer_id is not None and not isinstance(answer_id, str):
        raise ServiceError(400, "invalid_answer_id", "\"answer_id\" must be the X-Answer-Id of a prediction")
    return image, {"true_degree": parse_degree(fields.get("true_degree"), "true_degree", required=True),
                   "model_degree": parse_degree(fields.get("model_degree"), "model_degree", required=False),
                   "model_version": version, "answer_id": answer_id}


def count_correction(state: Mapping[Any, Any], correction: Correction, evidence: bool) -> None:
    """Feedback per served version, and whether that version had the turn right. Only `evidence` (a correction
    that quoted an answer id, redeemed once) counts in the version's signals; the rest is counted under
    "unverified", so callers can neither steer the analysis nor grow the label set."""
    model = state[SETTINGS].model_name
    version = correction.model_version if evidence else "unverified"
    if version is None or (evidence and version not in state[REGISTRY].versions(model)):
        version = "other"
    agreed = None if correction.model_degree is None else correction.model_degree == correction.true_degree
    state[METRICS].feedback.labels(version, {None: "unknown", True: "yes", False: "no"}[agreed]).inc()
    if evidence and agreed is not None and version != "other":
        state[SIGNALS].feedback(version, agreed)


@requires("predict")
async def feedback(request: web.Request) -> web.Response:
    state = request.config_dict
    settings, principal = state[SETTINGS], request[PRINCIPAL]
    body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)

    # Parsing a 15 MB form and decoding the photo: off the event loop, in the uploads' own few threads, so a
    # flood of uploads queues there and never holds the threads the dataset and admin routes use.
    def store() -> tuple[str, Any, bool, Answered | None, str | None]:
        image, fields = parse_feedback(body, request.headers.get("Content-Type", ""), request.query)
        answered = state[RECEIPTS].verify(fields["answer_id"])
        version, degree = ((answered.version, answered.model_degree) if answered else
                           (fields["model_version"], fields["model_degree"]))  # the id's word over the caller's
        added = state[DATASETS].add(image, fields["true_degree"], principal.user, version, degree)
        return (*added, answered, fields["answer_id"])

    loop = asyncio.get_running_loop()
    name, correction, duplicate, answered, answer_id = await loop.run_in_executor(state[UPLOADS], store)
    evidence = not duplicate and answered is not None and state[RECEIPTS].redeem(answer_id or "")
    if not duplicate:
        count_correction(state, correction, evidence)
    return web.json_response({"dataset": name, **asdict(correction), "duplicate": duplicate,
                              "evidence": evidence}, status=200 if duplicate else 201)


@requires("admin")
async def list_datasets(request: web.Request) -> web.Response:
    datasets = request.config_dict[DATASETS]

    def listing() -> dict[str, Any]:  # every dataset's manifest is read: off the event loop
        return {"active": datasets.active(), "datasets": [datasets.summary(name) for name in datasets.names()]}

    return web.json_response(await asyncio.to_thread(listing))


@requires("admin")
async def start_dataset(request: web.Request) -> web.Response:
    datasets = request.config_dict[DATASETS]
    name = (await read_json_object(request)).get("name")
    if name is not None and not isinstance(name, str):
        raise DatasetError(400, "bad_dataset_name", "\"name\" must be a string")
    started = await asyncio.to_thread(lambda: datasets.summary(datasets.start_new(name)))
    return web.json_response(started, status=201)


@requires("admin")
async def show_dataset(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(request.config_dict[DATASETS].describe,
                                                     request.match_info["name"]))


def photo_route(thumbnail: bool) -> Callable[[web.Request], Any]:
    @requires("admin")
    async def photo(request: web.Request) -> web.FileResponse:
        path = request.config_dict[DATASETS].photo(request.match_info["name"], request.match_info["sha256"],
                                                   thumbnail)
        return web.FileResponse(path, headers={"Content-Type": "image/jpeg", "Cache-Control": "private, no-store"})
    return photo


@requires("admin")
async def remove_contributor(request: web.Request) -> web.Response:
    """Every photo one user contributed to a dataset, dropped (a leaked or misused predict token)."""
    principal: Principal = request[PRINCIPAL]
    dropped = await asyncio.to_thread(request.config_dict[DATASETS].remove_user, request.match_info["name"],
                                      request.match_info["user"], principal.user)
    return web.json_response({"user": request.match_info["user"], "removed": dropped})


@requires("admin")
async def remove_photo(request: web.Request) -> web.Response:
    principal: Principal = request[PRINCIPAL]
    sha = request.match_info["sha256"]
    await asyncio.to_thread(request.config_dict[DATASETS].remove, request.match_info["name"], sha, principal.user)
    return web.json_response({"removed": sha})


def feedback_store(settings: ProxySettings) -> DatasetStore:
    """On a shared database the datasets' folder is shared too (pods on one claim): one writer at a time."""
    shared = AdvisoryLock(open_database(settings)) if settings.database_url else None
    store = DatasetStore(settings.datasets_dir, settings.max_image_pixels,
                         quota=Quota(settings.dataset_max_photos, settings.dataset_max_photos_per_user),
                         max_full_pixels=settings.max_full_decode_pixels, shared=shared)
    store.repair()  # what a crash left half made is set aside, never in the way of the next dataset
    return store


async def feedback_resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[DATASETS] = feedback_store(settings)
    app[HELD_OUT] = HeldOutCorrections(app[DATASETS])
    app[UPLOADS] = ThreadPoolExecutor(settings.upload_threads, thread_name_prefix="upload")
    yield
    app[UPLOADS].shutdown(wait=True)
    app[DATASETS].close()


def setup(app: web.Application) -> None:
    """The store, started and stopped with the gateway; corrections at /feedback, the datasets at /datasets."""
    app.cleanup_ctx.append(feedback_resources)
    app.add_subapp("/feedback", corrections_app())
    app.add_subapp("/datasets", datasets_app())


def corrections_app() -> web.Application:
    """POST /feedback (mounted there): a correction, with the predict scope."""
    app = web.Application()
    app.router.add_post("", feedback)
    return app


def datasets_app() -> web.Application:
    """/datasets (mounted there): the collected datasets, with the admin scope."""
    app = web.Application()
    app.router.add_get("", list_datasets)
    app.router.add_post("", start_dataset)
    app.router.add_get("/{name}", show_dataset)
    app.router.add_get("/{name}/photos/{sha256}", photo_route(thumbnail=False))
    app.router.add_get("/{name}/photos/{sha256}/thumbnail", photo_route(thumbnail=True))
    app.router.add_delete("/{name}/photos/{sha256}", remove_photo)
    app.router.add_delete("/{name}/users/{user}", remove_contributor)
    return app
