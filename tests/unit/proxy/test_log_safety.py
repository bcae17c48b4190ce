"""No credential in any log line, whoever writes it; no forged lines from a request path (issue 12 items 2, 9)."""

from __future__ import annotations

import io
import logging

import jwt

from auth_plugin.log_safety import REDACTED, RedactTokens, install, printable, redact

OPAQUE = "frs_" + "Ab3-_x" * 7
JWT = jwt.encode({"sub": "gina"}, "s" * 32, algorithm="HS256")


def test_every_token_shape_is_masked():
    line = (f"Invalid header: Authorization: Bearer {OPAQUE}\x7f | id_token={JWT} | "
            "Authorization: Bearer k9X2pQ7z (TorchServe's key) | access_token: frs_short")
    masked = redact(line)
    for secret in (OPAQUE, JWT, "k9X2pQ7z", "frs_short"):
        assert secret not in masked
    assert masked.count(REDACTED) >= 4 and "Invalid header" in masked


def test_the_filter_masks_messages_arguments_and_tracebacks_of_any_logger():
    root = logging.getLogger("test_log_safety")
    root.propagate = False
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root.addHandler(handler)
    install(root)
    install(root)  # idempotent: one filter per handler
    assert sum(isinstance(f, RedactTokens) for f in handler.filters) == 1
    try:
        raise ValueError(f"bad line: Authorization: Bearer {OPAQUE}\r")
    except ValueError:
        root.exception("aiohttp.server: %s", f"Bearer {JWT}")
    root.removeHandler(handler)
    text = out.getvalue()
    assert OPAQUE not in text and JWT not in text
    assert "ValueError" in text and REDACTED in text


def test_a_path_cannot_forge_a_log_line():
    assert printable("/predictions/x\n2026-01-01 INFO forged\x00") == "/predictions/x\\n2026-01-01 INFO forged\\x00"
    assert printable("/prédictions") == "/prédictions"
