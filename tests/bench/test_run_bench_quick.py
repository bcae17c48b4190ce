"""`make bench`'s quick pass, on the real stack: the bench must never again break silently (a renamed function
crashed it after its throughput tables). Speed is not judged here, only that every table is measured and written."""

from __future__ import annotations

import re
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow (CI: .ci/run)
sys.path.insert(0, str(ROOT / "bench"))
import bench_report  # noqa: E402  (bench/ is a folder of scripts, not a package)
import run_bench  # noqa: E402
import streamed_uploads  # noqa: E402
from bench_instruments import Measure  # noqa: E402


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
    budget = re.search(r"^\| \(the token proxy's budget for <= 2 ms added p50\) \| - \| ([\d.]+) \|$", text,
                       re.MULTILINE)
    assert budget and float(budget.group(1)) > 0  # c=1 has none (one request in flight); c=4 has one
    assert re.search(rf"ab {bench_report.QUICK.soak_requests} requests: 0 failed \| 0\.00 \| yes", text)
    assert "Model: `food_rotation_lite0.pth` (efficientnet_lite0" in text  # the model that ships is measured


def test_streamed_uploads_bench_imports_what_it_runs_and_reports_each_path_against_direct():
    """bench/streamed_uploads.py borrows run_bench's archives and weights: a rename must fail here, not in a run."""
    names = ("TorchServe direct", "proxy, streamed (now)", "proxy, read whole first (before)")
    results = {("12 MP", 1): dict(zip(names, (Measure(20.0, 50, 60, 70), Measure(19.0, 53, 60, 70),
                                              Measure(18.0, 56, 60, 70)), strict=True))}
    lines = streamed_uploads.table(results)
    assert "| proxy, streamed (now) / direct (goal >= 0.95) | 0.95 |" in lines
    assert "| proxy, read whole first (before): added p50 ms (goal <= 2) | +6 |" in lines
    assert streamed_uploads.WEIGHTS.is_file() and streamed_uploads.CONFIG.is_file()
