"""After the whole suite (marked last; tests/conftest.py moves it to the end), no issued token is in any log file."""

from __future__ import annotations

import pytest

from tests.stack import ISSUED

pytestmark = [pytest.mark.integration, pytest.mark.last]


def test_no_issued_token_in_any_log_file_of_the_suite(tmp_path_factory):
    logs = [path for path in tmp_path_factory.getbasetemp().rglob("*.log") if path.is_file()]
    text = "\n".join(path.read_text(errors="replace") for path in logs)
    assert len(ISSUED) >= 20 and len(logs) >= 10 and "POST /predictions/food_rotation" in text
    leaked = [token[:8] + "..." for token in ISSUED if token in text]
    assert leaked == []
