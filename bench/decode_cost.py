"""What decoding one large lossless image costs the handler: time and decoded size, per megapixel count.

    .venv/bin/python bench/decode_cost.py 100 50 25

Each size is a PNG of random tiles (it compresses like a photo, not like a flat colour), decoded in a fresh process
by the handler's own path (`load_upright` + `to_pixels`, one thread, no pixel limits), with the peak resident memory
the decode adds to that process (Linux: /proc/self/clear_refs resets the peak). The figures chose the default
`max_full_decode_pixels` (tests/resilience/REPORT.md, issue 12 item 5).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def png_of(megapixels: float) -> bytes:
    side = int((megapixels * 1e6) ** 0.5)
    tile = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    pixels = np.tile(tile, (side // 256 + 1, side // 256 + 1, 1))[:side, :side]
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def measure(path: str) -> dict[str, float]:
    """In the child: one decode, timed."""
    import torch

    from food_rotation.photo_io import load_upright
    from food_rotation.rotation_model import to_pixels

    torch.set_num_threads(1)
    data = open(path, "rb").read()
    Path("/proc/self/clear_refs").write_text("5")  # the peak RSS starts again from here: what the decode adds
    resident = _rss_kib("VmRSS")
    started = time.perf_counter()
    image, _ = load_upright(data, 160, 10**10, 10**10)
    to_pixels(image, 160)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "decoded_mib": round(image.width * image.height * 3 / 2**20),
            "file_mib": round(len(data) / 2**20, 1), "peak_added_mib": round((_rss_kib("VmHWM") - resident) / 1024)}


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        print(json.dumps(measure(argv[1])))
        return 0
    print("| megapixels | PNG MiB | decoded MiB | peak RSS added, MiB | decode + preprocess, s (one thread) |\n"
          "| --- | --- | --- | --- | --- |")
    for megapixels in map(float, argv or ["100", "50", "25"]):
        path = f"/tmp/decode_cost_{megapixels:g}.png"
        with open(path, "wb") as out:
            out.write(png_of(megapixels))
        row = json.loads(subprocess.run([sys.executable, __file__, "--child", path], capture_output=True, text=True,
                                        check=True).stdout)
        print(f"| {megapixels:g} | {row['file_mib']} | {row['decoded_mib']} | {row['peak_added_mib']} | "
              f"{row['seconds']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
