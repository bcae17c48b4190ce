"""Feedback and datasets over HTTP, in-process: input forms, refusals, scopes; and the page with its headers."""

from __future__ import annotations

import asyncio
import base64
import io
import time

import pytest
from aiohttp import FormData
from PIL import Image

from auth_plugin.app_keys import DATASETS
from tests.photos import encode, rotated, scene


def form(image: bytes, **fields: str) -> FormData:
    data = FormData()
    data.add_field("image", image, filename="dinner.jpg", content_type="image/jpeg")
    for name, value in fields.items():
        data.add_field(name, value)
    return data


async def test_multipart_feedback_is_stored_and_a_duplicate_counted(setup):
    fake, client, auth = setup
    proxy = await client()
    photo = encode(rotated(scene(), 90))
    first = await proxy.post("/feedback", data=form(photo, true_degree="90", model_degree="0", model_version="1.0"),
                             headers=auth)
    body = await first.json()
    assert first.status == 201 and body["dataset"] == "feedback-1" and body["count"] == 1
    assert (body["true_degree"], body["model_degree"], body["model_version"], body["user"]) == (90, 0, "1.0", "alice")
    again = await proxy.post("/feedback", data=form(photo, true_degree="90"), headers=auth)
    assert again.status == 200 and (await again.json())["count"] == 2 and (await again.json())["duplicate"]
    assert fake.seen == []  # feedback never goes to TorchServe


@pytest.mark.parametrize("how", ["raw", "json"])
async def test_raw_and_json_bodies_carry_the_fields_too(setup, how):
    _, client, auth = setup
    proxy = await client()
    photo = encode(rotated(scene(1002), 270))
    if how == "raw":
        answer = await proxy.post("/feedback?true_degree=270&model_version=2.0", data=photo,
                                  headers={**auth, "Content-Type": "image/jpeg"})
    else:
        answer = await proxy.post("/feedback", json={"image": base64.b64encode(photo).decode(), "true_degree": 270,
                                                     "model_degree": 90}, headers=auth)
    assert answer.status == 201 and (await answer.json())["true_degree"] == 270


@pytest.mark.parametrize(("send", "status", "error"), [
    (lambda: form(encode(scene())), 400, "missing_true_degree"),
    (lambda: form(encode(scene()), true_degree="45"), 400, "invalid_true_degree"),
    (lambda: form(encode(scene()), true_degree="90", model_degree="x"), 400, "invalid_model_degree"),
    (lambda: form(encode(scene()), true_degree="90", model_version="<script>"), 400, "invalid_model_version"),
    (lambda: form(b"just some text, not a photo", true_degree="0"), 415, "not_an_image"),
    (lambda: form(b"", true_degree="0"), 400, "empty_body"),
    (lambda: {"true_degree": "0"}, 415, "form_encoded_body"),
])
async def test_bad_feedback_gets_the_same_named_4xx_as_a_prediction(setup, send, status, error):
    _, client, auth = setup
    proxy = await client()
    answer = await proxy.post("/feedback", data=send(), headers=auth)
    assert answer.status == status and (await answer.json())["error"] == error


async def test_feedback_over_the_body_limit_is_413_and_needs_a_token(setup):
    _, client, auth = setup
    proxy = await client(max_body_bytes=1000)
    answer = await proxy.post("/feedback?true_degree=0", data=b"x" * 1001, headers=auth)
    assert answer.status == 413 and (await answer.json())["error"] == "body_too_large"
    assert (await proxy.post("/feedback?true_degree=0", data=encode(scene()))).status == 401


async def test_datasets_need_the_admin_scope(setup, admin_auth):
    _, client, auth = setup
    proxy = await client()
    for method, path in (("GET", "/datasets"), ("POST", "/datasets"), ("GET", "/datasets/feedback-1"),
                         ("DELETE", "/datasets/feedback-1/photos/" + "0" * 64)):
        answer = await proxy.request(method, path, headers=auth)
        assert answer.status == 403 and (await answer.json())["error"] == "insufficient_scope"


async def test_admin_lists_browses_removes_and_starts_datasets(setup, admin_auth):
    _, client, auth = setup
    proxy = await client()
    for seed, degree in ((1001, 90), (1002, 90), (1003, 180)):
        await proxy.post("/feedback", data=form(encode(rotated(scene(seed), degree)), true_degree=str(degree)),
                         headers=auth)
    listing = await (await proxy.get("/datasets", headers=admin_auth)).json()
    assert listing["active"] == "feedback-1"
    assert listing["datasets"][0]["per_class"] == {"0": 0, "90": 2, "180": 1, "270": 0}
    items = (await (await proxy.get("/datasets/feedback-1", headers=admin_auth)).json())["items"]
    sha = items[0]["sha256"]
    thumbnail = await proxy.get(f"/datasets/feedback-1/photos/{sha}/thumbnail", headers=admin_auth)
    assert thumbnail.status == 200 and thumbnail.content_type == "image/jpeg"
    assert max(Image.open(io.BytesIO(await thumbnail.read())).size) <= 192
    assert (await proxy.delete(f"/datasets/feedback-1/photos/{sha}", headers=admin_auth)).status == 200
    assert (await proxy.get(f"/datasets/feedback-1/photos/{sha}", headers=admin_auth)).status == 404
    started = await proxy.post("/datasets", json={}, headers=admin_auth)
    assert started.status == 201 and (await started.json())["name"] == "feedback-2"
    listing = await (await proxy.get("/datasets", headers=admin_auth)).json()
    assert listing["active"] == "feedback-2" and listing["datasets"][0]["photos"] == 2
    assert listing["datasets"][0]["closed_at"] is not None
    refused = await proxy.post("/datasets", json={"name": "feedback-1"}, headers=admin_auth)
    assert refused.status == 409 and (await refused.json())["error"] == "dataset_exists"


async def test_whoami_tells_user_and_scopes(setup, admin_auth):
    _, client, _ = setup
    proxy = await client()
    assert await (await proxy.get("/whoami", headers=admin_auth)).json() == {
        "user": "root", "scopes": ["admin", "predict"], "model": "food_rotation"}
    refused = await proxy.get("/whoami", headers={"Authorization": "Bearer frs_wrong"})
    assert refused.status == 401 and (await refused.json())["message"] == "the token is not recognised"


@pytest.mark.parametrize(("path", "content_type"), [
    ("/", "text/html"), ("/static/app.css", "text/css"),
    *((f"/static/{name}.js", "text/javascript") for name in ("app", "common", "predict", "data", "models", "tokens"))])
async def test_the_page_is_served_with_a_strict_policy(setup, path, content_type):
    _, client, _ = setup
    proxy = await client()
    answer = await proxy.get(path)
    assert answer.status == 200 and answer.content_type == content_type
    policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy and "unsafe" not in policy
    assert answer.headers["X-Content-Type-Options"] == "nosniff" and answer.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", ["/static/../settings.py", "/static/%2e%2e/app.py", "/static/tokens.sqlite3",
                                  "/index.html/../app.py"])
async def test_nothing_else_is_served_as_a_file(setup, path):
    _, client, _ = setup
    proxy = await client()
    assert (await proxy.get(path)).status == 404


async def test_a_form_of_thousands_of_parts_is_refused_before_parsing(setup):
    _, client, auth = setup
    proxy = await client()
    boundary = "b0undary"
    parts = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nx\r\n'.encode()
                     for i in range(30_000))
    answer = await proxy.post("/feedback?true_degree=0", data=parts + f"--{boundary}--\r\n".encode(),
                              headers={**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status == 400 and (await answer.json())["error"] == "too_many_parts"


async def test_uploads_queue_in_their_own_threads_and_never_hold_the_dataset_routes(setup, admin_auth):
    _, client, auth = setup
    proxy = await client(upload_threads=1)
    store = proxy.server.app[DATASETS]
    real_add = store.add

    def slow_add(*args, **kwargs):
        time.sleep(0.4)  # a big photo being decoded
        return real_add(*args, **kwargs)

    store.add = slow_add
    uploads = [asyncio.create_task(proxy.post("/feedback", data=form(encode(scene(seed)), true_degree="0"),
                                              headers=auth)) for seed in range(6)]
    await asyncio.sleep(0.1)
    started = time.monotonic()
    listing = await proxy.get("/datasets", headers=admin_auth)
    assert listing.status == 200 and time.monotonic() - started < 0.3  # 6 uploads x 0.4 s queue elsewhere
    assert [(await upload).status for upload in uploads] == [201] * 6


async def test_an_admin_drops_every_photo_one_user_sent(setup, admin_auth):
    _, client, auth = setup
    proxy = await client()
    for seed in (3, 4):
        sent = await proxy.post("/feedback", data=form(encode(scene(seed)), true_degree="0"), headers=auth)
        assert sent.status == 201
    refused = await proxy.delete("/datasets/feedback-1/users/alice", headers=auth)  # a predict token may not
    assert refused.status == 403
    dropped = await proxy.delete("/datasets/feedback-1/users/alice", headers=admin_auth)
    assert dropped.status == 200 and len((await dropped.json())["removed"]) == 2
    assert (await (await proxy.get("/datasets/feedback-1", headers=admin_auth)).json())["photos"] == 0
