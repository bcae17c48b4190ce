"""`python -m auth_plugin models ...`: the control plane from a shell, through the proxy's admin API.

Needs an admin-scope token: --token, PROXY_ADMIN_TOKEN, or the one `make serve` keeps in .run/proxy/admin_token.
Exits non-zero, with the proxy's reason, when a step is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import requests

from auth_plugin.settings import ROOT, ProxySettings
from food_rotation import MODEL_NAME


def default_url() -> str:
    """$PROXY_URL, else where `make serve` put the gateway (PROXY_HOST and PROXY_PORT move it)."""
    return os.environ.get("PROXY_URL") or ProxySettings.from_env(os.environ).url(for_callers=True)
SAVED_ADMIN_TOKEN = ROOT / ".run" / "proxy" / "admin_token"


def add_parser(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="list, deploy, canary, promote, roll back, retire versions")
    models.add_argument("--url", default=default_url())
    models.add_argument("--token", help="admin-scope token (default: PROXY_ADMIN_TOKEN or .run/proxy/admin_token)")
    models.add_argument("--model", default=MODEL_NAME)
    actions = models.add_subparsers(dest="action", required=True)
    actions.add_parser("list")
    deploy = actions.add_parser("deploy", help="register an archive of model_store/, gate it, optionally as canary")
    deploy.add_argument("archive", help="file name of a .mar in model_store/")
    deploy.add_argument("--canary", type=float, default=0.0, help="percent of traffic for the new version")
    deploy.add_argument("--gate-dataset", help="also gate on the held-out photos of these collected datasets "
                        "('name,name' or 'all'; default: those the archive was retrained on)")
    canary = actions.add_parser("canary")
    canary.add_argument("version")
    canary.add_argument("percent", type=float)
    promote = actions.add_parser("promote", help="make a version (default: the canary) the default, drain the old")
    promote.add_argument("version", nargs="?")
    actions.add_parser("rollback", help="restore the previous default")
    retire = actions.add_parser("retire")
    retire.add_argument("version")


def find_admin_token(given: str | None) -> str | None:
    """--token, else PROXY_ADMIN_TOKEN, else the one `make serve` saved; None when there is none."""
    token = given or os.environ.get("PROXY_ADMIN_TOKEN")
    if not token and SAVED_ADMIN_TOKEN.is_file():
        token = SAVED_ADMIN_TOKEN.read_text().strip()
    return token or None


def admin_token(given: str | None) -> str:
    token = find_admin_token(given)
    if not token:
        raise SystemExit("error: no admin token: pass --token or set PROXY_ADMIN_TOKEN")
    return token


def _print_versions(answer: dict) -> None:
    def figure(value: float | None) -> str:
        return "" if value is None else f"{value:.4f}"

    print(f"{'version':<10} {'default':<8} {'canary%':<8} {'workers':<8} {'in-flight':<10} {'val_acc':<8} "
          f"{'held-out':<9} {'arch':<20} {'archive':<28} datasets")
    for row in answer["versions"]:
        print(f"{row['version']:<10} {'yes' if row['default'] else '':<8} {row['canary_percent']:<8g} "
              f"{row['workers']:<8} {row['in_flight']:<10} {figure(row.get('val_acc')):<8} "
              f"{figure(row.get('heldout_acc')):<9} {row.get('arch') or '':<20} {row['archive']:<28} "
              f"{', '.join(row.get('datasets') or [])}")


class Refused(Exception):
    """The proxy refused the call (its status and reason are in the message), or did not answer (`status` 0)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def admin_call(url: str, model: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    """One control-plane call through the proxy's admin API; its JSON answer, or Refused saying why not."""
    try:
        answer = requests.request(method, f"{url.rstrip('/')}/admin/models/{model}{path}", json=body,
                                  headers={"Authorization": f"Bearer {token}"}, timeout=600)
    except requests.RequestException as exc:
        raise Refused(f"error: the proxy at {url} did not answer: {exc}") from exc
    try:
        document = answer.json()
    except ValueError:
        document = {"message": answer.text}
    if answer.status_code >= 400:
        raise Refused(f"refused ({answer.status_code} {document.get('error', '')}): {document.get('message')}",
                      answer.status_code)
    return document


def run(args: argparse.Namespace) -> int:
    calls = {
        "list": ("GET", "", None),
        "deploy": ("POST", "/deploy", {"archive": getattr(args, "archive", None),
                                       "canary": getattr(args, "canary", 0),
                                       "gate_dataset": getattr(args, "gate_dataset", None)}),
        "canary": ("POST", "/canary", {"version": getattr(args, "version", None),
                                       "percent": getattr(args, "percent", 0)}),
        "promote": ("POST", "/promote", {"version": getattr(args, "version", None)}),
        "rollback": ("POST", "/rollback", {}),
        "retire": ("POST", "/retire", {"version": getattr(args, "version", None)}),
    }
    method, path, body = calls[args.action]
    try:
        document = admin_call(args.url, args.model, admin_token(args.token), method, path, body)
    except Refused as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.action == "list":
        _print_versions(document)
    else:
        print(json.dumps(document))
    return 0

