"""`food-rotation fix` (the installed console script) on a folder of photos through the suite's real gateway and
TorchServe (issue 32): EXIF-tagged JPEGs turned by their Orientation alone (every byte outside the Exif segment
kept), PNG and lossless WebP re-encoded pixel for pixel with their ICC profile, a corrupt file reported while the run
goes on, a dry run that writes nothing else, and runs that resume without ever turning a photo twice."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image, ImageCms, ImageOps

from food_rotation.jpeg_orientation import exif_segment
from food_rotation.photo_io import turn
from operations.serving import fix_example
from tests.conftest import ROOT
from tests.photos import CLEAR_SCENES, encode, jpeg_with_orientation, rotated, scene
from tests.stack import issue_token

pytestmark = pytest.mark.integration
FIX = Path(sys.executable).parent / "food-rotation"  # the console script pip installed beside this Python
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


REAL = ROOT / "data" / "rotation_set" / "heldout" / "real" / "ifct"  # real dish photos never trained on


def real_dish(index: int) -> Image.Image:
    photos = sorted(REAL.rglob("*.jpg"))
    assert photos, f"no real photos in {REAL}: make test runs make real-data first"
    with Image.open(photos[index]) as image:
        return image.convert("RGB")


def photos(folder: Path) -> dict[str, bytes]:
    """A phone dump: turned and upright JPEGs (one stored sideways with its EXIF turn), real dish photos (one as
    the camera stored it sideways, tagged), a PNG with an ICC profile and a text chunk, a lossless WebP, a corrupt
    JPEG and a note that is no photo."""
    a, b, c, d = (scene(seed).resize((160, 120)) for seed in CLEAR_SCENES)
    files = {
        "real/dish.jpg": sorted(REAL.rglob("*.jpg"))[0].read_bytes(),
        "real/dish_sideways_tagged.jpg": jpeg_with_orientation(rotated(real_dish(1), 90), 8),
        "dinner/turned.jpg": encode(rotated(a, 90), exif=_exif_with_make(), quality=90),
        "dinner/sideways_tagged.jpg": jpeg_with_orientation(rotated(b, 270), 6),
        "dinner/upright.jpg": encode(c, quality=90),
        "lunch/turned.png": _png(rotated(d, 180)),
        "lunch/turned.webp": encode(rotated(a, 270), "WEBP", lossless=True),
        "lunch/corrupt.jpg": b"\xff\xd8\xff\xe0 this is no photo",
        "notes.txt": b"not a photo",
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


def _exif_with_make() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneCam"
    return exif.tobytes()


def _png(img: Image.Image) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    text = PngInfo()
    text.add_text("Comment", "lunch")
    return encode(img, "PNG", icc_profile=SRGB, pnginfo=text)


def shown(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def fix(folder: Path, *args: str, url: str, token: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(FIX), "fix", str(folder), *args, "--min-confidence", "0", "--jobs", "2"],
                          env={**os.environ, "FOOD_ROTATION_URL": url, "FOOD_ROTATION_TOKEN": token,
                               "TQDM_DISABLE": "1"}, capture_output=True, text=True, timeout=300)


def rows(report: Path) -> dict[str, dict[str, str]]:
    with report.open(newline="") as stream:
        return {row["path"]: row for row in csv.DictReader(stream)}


def outside_exif(jpeg: bytes) -> bytes:
    segment = exif_segment(jpeg)
    return jpeg if segment is None else jpeg[:segment[0]] + jpeg[segment[1]:]


def check_written(original: bytes, written: bytes, row: dict[str, str]) -> None:
    """A fixed photo shows the original turned by the answer; a JPEG changed in its Exif segment alone."""
    if row["action"] != "fixed":
        assert written == original, row
        return
    assert np.array_equal(shown(written), np.asarray(turn(Image.fromarray(shown(original)), int(row["turn"]))))
    if original.startswith(b"\xff\xd8"):
        assert outside_exif(written) == outside_exif(original) and row["detail"] == "EXIF orientation"
    else:
        with Image.open(io.BytesIO(written)) as image:
            assert image.info.get("icc_profile") == (SRGB if row["path"].endswith(".png") else None)
            assert image.info.get("Comment") == ("lunch" if row["path"].endswith(".png") else None)


def test_a_folder_is_fixed_into_a_copy_and_a_second_run_turns_nothing_twice(tmp_path, proxy):
    token = issue_token(proxy, "--user", "photographer", "--scopes", "predict")[1]
    files = photos(tmp_path / "dump")
    first = fix(tmp_path / "dump", "--out", str(tmp_path / "fixed"), url=proxy.url, token=token)
    assert first.returncode == 1, first.stderr[-2000:]  # the corrupt photo failed; the rest went on
    report = rows(tmp_path / "fixed" / "food-rotation-report.csv")
    assert set(report) == set(files) - {"notes.txt"}
    assert report["lunch/corrupt.jpg"]["action"] == "failed" and "HTTP 400" in report["lunch/corrupt.jpg"]["detail"]
    assert {report[name]["action"] for name in report if "turned" in name} == {"fixed"}  # the demo model's scenes
    assert report["dinner/sideways_tagged.jpg"]["action"] == "fixed"
    for name, row in report.items():
        if row["action"] != "failed":
            check_written(files[name], (tmp_path / "fixed" / name).read_bytes(), row)
    assert (tmp_path / "dump" / "dinner" / "turned.jpg").read_bytes() == files["dinner/turned.jpg"]  # untouched
    assert "8 photos" in first.stdout

    written = {name: hashlib.sha256((tmp_path / "fixed" / name).read_bytes()).hexdigest()
               for name in report if report[name]["action"] != "failed"}
    again = fix(tmp_path / "dump", "--out", str(tmp_path / "fixed"), url=proxy.url, token=token)
    assert again.returncode == 1 and "7 skipped" in again.stdout and "1 failed" in again.stdout, again.stdout
    assert written == {name: hashlib.sha256((tmp_path / "fixed" / name).read_bytes()).hexdigest() for name in written}


def test_in_place_keeps_backups_and_an_interrupted_run_resumes_without_turning_twice(tmp_path, proxy):
    token = issue_token(proxy, "--user", "photographer", "--scopes", "predict")[1]
    files = photos(tmp_path / "dump")
    (tmp_path / "dump" / "lunch" / "corrupt.jpg").unlink()
    done = fix(tmp_path / "dump", "--in-place", url=proxy.url, token=token)
    assert done.returncode == 0, done.stderr[-2000:]
    report_file = tmp_path / "dump" / ".food-rotation-backup" / "food-rotation-report.csv"
    report = rows(report_file)
    fixed = [name for name, row in report.items() if row["action"] == "fixed"]
    assert len(fixed) >= 5
    for name in fixed:
        assert (tmp_path / "dump" / ".food-rotation-backup" / name).read_bytes() == files[name]  # the original
        check_written(files[name], (tmp_path / "dump" / name).read_bytes(), report[name])
    after = {name: (tmp_path / "dump" / name).read_bytes() for name in report}

    with report_file.open() as stream:  # as if it had been killed before writing a single row
        header = stream.readline()
    report_file.write_text(header)
    resumed = fix(tmp_path / "dump", "--in-place", url=proxy.url, token=token)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert {name: (tmp_path / "dump" / name).read_bytes() for name in report} == after  # nothing turned twice
    assert {row["detail"] for name, row in rows(report_file).items() if name in fixed} == {
        "already replaced (found on resuming)"}


def test_a_dry_run_writes_the_report_and_nothing_else(tmp_path, proxy):
    token = issue_token(proxy, "--user", "photographer", "--scopes", "predict")[1]
    files = photos(tmp_path / "dump")
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    dry = fix(tmp_path / "dump", "--dry-run", "--report", str(tmp_path / "plan.csv"), url=proxy.url, token=token)
    assert dry.returncode == 1
    report = rows(tmp_path / "plan.csv")
    assert report["dinner/turned.jpg"]["action"] == "would fix" and report["dinner/turned.jpg"]["turn"] == "90"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == sorted([*before, "plan.csv"])
    assert all((tmp_path / "dump" / name).read_bytes() == data for name, data in files.items())


def test_the_command_make_serve_prints_works(tmp_path, proxy):
    token = issue_token(proxy, "--user", "photographer", "--scopes", "predict")[1]
    (tmp_path / "PHOTOS").mkdir()
    (tmp_path / "PHOTOS" / "turned.jpg").write_bytes(encode(rotated(scene(), 90)))
    printed = fix_example(proxy.url, token, str(tmp_path / "PHOTOS"), str(tmp_path / "FIXED"))
    done = subprocess.run(printed.replace(".venv/bin/food-rotation", str(FIX)), shell=True, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "TQDM_DISABLE": "1"})
    assert done.returncode == 0 and "1 photo: 1 fixed" in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "FIXED" / "turned.jpg").is_file()


def test_without_a_token_or_with_a_bad_one_it_says_so(tmp_path, proxy):
    photos(tmp_path / "dump")
    missing = subprocess.run([str(FIX), "fix", str(tmp_path / "dump"), "--dry-run"], capture_output=True, text=True,
                             env={k: v for k, v in os.environ.items() if k != "FOOD_ROTATION_TOKEN"}, timeout=60)
    assert missing.returncode == 2 and "FOOD_ROTATION_TOKEN" in missing.stderr
    refused = fix(tmp_path / "dump", "--dry-run", "--report", str(tmp_path / "r.csv"), url=proxy.url, token="frs_no")
    assert refused.returncode == 1
    assert {row["detail"].split(":")[0] for row in rows(tmp_path / "r.csv").values()} == {"HTTP 401 invalid_token"}


class HeldRelay(ThreadingHTTPServer):
    """A real HTTP relay in front of the gateway that holds the request after the first `passed` until `released`:
    the test's Ctrl-C then lands while a photo is in flight, however loaded the machine (a race against a fast
    run otherwise let the whole folder finish first)."""

    def __init__(self, target: str, passed: int) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.target, self.passed, self.arrived = target, passed, itertools.count(1)
        self.held, self.released = threading.Event(), threading.Event()
        self.url = f"http://127.0.0.1:{self.server_port}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.shutdown()
        self.server_close()


class _Forward(BaseHTTPRequestHandler):
    server: HeldRelay

    def do_POST(self) -> None:
        if next(self.server.arrived) == self.server.passed + 1:
            self.server.held.set()
            self.server.released.wait(60)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = {key: self.headers[key] for key in ("Authorization", "Content-Type")}
        answer = requests.post(self.server.target + self.path, data=body, headers=headers, timeout=60)
        self.send_response(answer.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, *args: object) -> None:
        pass


def test_ctrl_c_in_place_stops_soon_and_the_same_command_finishes_the_job_turning_each_photo_once(tmp_path, proxy):
    token = issue_token(proxy, "--user", "photographer", "--scopes", "predict")[1]
    originals = {}
    for index in range(40):
        name = f"dump/p{index:02d}.jpg"
        originals[name] = encode(rotated(scene(CLEAR_SCENES[index % 4]).resize((160, 120)), 90), quality=90)
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(originals[name])
    report = tmp_path / "dump" / ".food-rotation-backup" / "food-rotation-report.csv"
    command = [str(FIX), "fix", str(tmp_path / "dump"), "--in-place", "--min-confidence", "0", "--jobs", "1"]
    relay = HeldRelay(proxy.url, passed=3)
    try:
        env = {**os.environ, "FOOD_ROTATION_URL": relay.url, "FOOD_ROTATION_TOKEN": token, "TQDM_DISABLE": "1"}
        running = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert relay.held.wait(60), "the fourth photo never reached the gateway"
        running.send_signal(signal.SIGINT)
        time.sleep(0.5)  # Ctrl-C taken while the fourth photo is in flight; then its answer comes
        relay.released.set()
        _, said = running.communicate(timeout=60)
    finally:
        relay.close()
    assert running.returncode == 130 and "the same command resumes" in said, said[-2000:]
    # it stopped soon: the photo in flight finished its write (unreported), the queued ones were never sent
    replaced = [name for name, original in originals.items() if (tmp_path / name).read_bytes() != original]
    assert replaced == sorted(originals)[:4] and len(rows(report)) <= 3
    env["FOOD_ROTATION_URL"] = proxy.url
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    done = rows(report)
    assert set(done) == {name.removeprefix("dump/") for name in originals}
    for name, original in originals.items():  # each shown turned once (twice would be 180 degrees)
        written = (tmp_path / name).read_bytes()
        assert np.array_equal(shown(written), np.asarray(turn(Image.fromarray(shown(original)), 90))), name
        assert outside_exif(written) == outside_exif(original)
    assert {row["action"] for row in done.values()} == {"fixed"}
