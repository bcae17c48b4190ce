"""The container's HEALTHCHECK: GET /healthz of the gateway that this environment configures, exit 0 if it answers.

    python -m food_rotation.operations.healthcheck        (deploy/container/Dockerfile)

It reads the gateway's own settings (PROXY_HOST, PROXY_PORT, PROXY_TLS_CERT_FILE), so `-e PROXY_PORT=9000` or TLS
in the gateway does not turn a healthy container "unhealthy" (and restarted by its orchestrator). The loopback call
does not verify the certificate: it is the gateway's own, named for its public address. Under mTLS
(PROXY_TLS_CLIENT_CA_FILE) the gateway refuses a caller without a client certificate: check from outside there.
"""

from __future__ import annotations

import http.client
import os
import ssl
import sys
import urllib.error
import urllib.request

from auth_plugin.settings import ProxySettings


def loopback_context() -> ssl.SSLContext:
    """TLS without verification: the call goes to this machine's own gateway, whose certificate names another host."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def healthy(settings: ProxySettings, timeout_s: float = 4.0) -> bool:
    context = loopback_context() if settings.tls else None
    try:
        with urllib.request.urlopen(f"{settings.url(for_callers=True)}/healthz", timeout=timeout_s,
                                    context=context) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return False


def main() -> int:
    return 0 if healthy(ProxySettings.from_env(os.environ)) else 1


if __name__ == "__main__":
    sys.exit(main())
