"""How long a normal prediction waits while four large PNGs are predicted (issue 12 item 5).

    make serve        # then, with the demo token it prints:
    .venv/bin/python bench/large_png_wait.py frs_...

Four threads each send one PNG of random tiles (bench/decode_cost.py) of 100 MP (over the default
`max_full_decode_pixels`: refused from its header) and then of 50 MP (at the limit: decoded whole), and 0.3 s later
one normal photo (samples/rotated_scene.jpg) is sent; each line gives status codes and seconds.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import requests
from decode_cost import png_of  # bench/ is not a package: its modules import by name

URL = "http://127.0.0.1:8080/predictions/food_rotation"
NORMAL = (Path(__file__).resolve().parents[1] / "samples" / "rotated_scene.jpg").read_bytes()


def timed(data: bytes, headers: dict[str, str]) -> tuple[int, float]:
    started = time.perf_counter()
    answer = requests.post(URL, data=data, headers=headers, timeout=120)
    return answer.status_code, round(time.perf_counter() - started, 2)


def main(token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    print("normal photo alone:", timed(NORMAL, headers))
    for megapixels in (100, 50):
        big, results = png_of(megapixels), []
        threads = [threading.Thread(target=lambda data=big, out=results: out.append(timed(data, headers)))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        normal = timed(NORMAL, headers)
        for thread in threads:
            thread.join()
        print(f"{megapixels} MP PNG x 4 ({len(big) / 2**20:.1f} MiB each): {sorted(results)}; the normal photo "
              f"meanwhile: {normal}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
