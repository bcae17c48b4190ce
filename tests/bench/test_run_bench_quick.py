"""`make bench`'s quick pass, on the real stack: the bench must never again break silently (a renamed function
crashed it after its throughput tables). Speed is not judged here, only that every table is measured and written."""

from __future__ import annotations

import re
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration
sys.path.insert(0, str(ROOT / "bench"))
import bench_report  # noqa: E402  (bench/ is a folder of scripts, not a package)
import run_bench  # noqa: E402


def test_quick_bench_measures_every_path_and_writes_the_report(tmp_path):
    out = tmp_path / "RESULTS.md"
    assert run_bench.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    for concurrency in bench_report.QUICK.concurrency:
        assert f"Concurrency {concurrency}:" in text
    for _, title in bench_report.PATHS:  # every path measured at every cell, with a positive rate
        rates = re.findall(rf"^\| {re.escape(title)} \| ([\d.]+) \|", text, re.MULTILINE)
        assert len(rates) == len(bench_report.QUICK.concurrency) and all(float(rate) > 0 for rate in rates)
    split = re.search(r"\| \*\*total through the proxy\*\* \| \*\*([\d.]+)\*\*", text)
    assert split and float(split.group(1)) > 0
    handler_ms = re.search(r"^\| handler work[^|]*\| ([\d.]+) \|", text, re.MULTILINE)
    assert handler_ms and float(handler_ms.group(1)) > 0
    assert re.search(rf"ab {bench_report.QUICK.soak_requests} requests: 0 failed \| 0\.00 \| yes", text)
    assert "Model: `food_rotation_lite0.pth` (efficientnet_lite0" in text  # the model that ships is measured
