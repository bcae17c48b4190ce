"""The container's HEALTHCHECK: GET /healthz of the gateway that this environment configures, exit 0 if it answers.

    python -m operations.healthcheck        (deploy/container/Dockerfile)

It reads the gateway's own settings (PROXY_HOST, PROXY_PORT, PROXY_TLS_CERT_FILE), so `-e PROXY_PORT=9000` or TLS
in the gateway does not turn a healthy container "unhealthy" (and restarted by its orchestrator). The probe is
wait_ready's (gateway_process.answers: the certificate is not verified on loopback). Under mTLS
(PROXY_TLS_CLIENT_CA_FILE) the gateway refuses a caller without a client certificate: check from outside there.
"""

from __future__ import annotations

import os
import sys

from auth_plugin.settings import ProxySettings
from operations.gateway_process import answers


def healthy(settings: ProxySettings, timeout_s: float = 4.0) -> bool:
    return answers(settings.url(for_callers=True), "/healthz", timeout_s)


def main() -> int:
    return 0 if healthy(ProxySettings.from_env(os.environ)) else 1


if __name__ == "__main__":
    sys.exit(main())
