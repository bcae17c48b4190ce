"""`python -m auth_plugin models ...`: the control plane from a shell, through the proxy's admin API.

Needs an admin-scope token: --token, PROXY_ADMIN_TOKEN, or the one `make serve` keeps in .run/proxy/admin_token.
Exits non-zero, with the proxy's reason, when a step is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import quote

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
    models.add_argument("--json", action="store_true", help="print the proxy's JSON answer (for scripts)")
    actions = models.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the deployed versions: default, canary share, workers, in flight, accuracy")
    actions.add_parser("history", help="every default the model has had: who made it so, when, how")
    audit = actions.add_parser("audit", help="the latest admin actions: who, what, when, outcome")
    audit.add_argument("--limit", type=int, default=50)
    deploy = actions.add_parser("deploy", help="register an archive of model_store/, gate it, optionally as canary")
    deploy.add_argument("archive", help="a .mar in model_store/ (its file name, or its path)")
    deploy.add_argument("--canary", type=float, default=0.0, help="percent of traffic for the new version")
    deploy.add_argument("--auto", action="store_true", help="canary analysis: step the share up while the new "
                        "version's errors, p95, unsure share and corrections stay within bounds of the default's, "
                        "then promote it, or retire it the moment one is crossed")
    deploy.add_argument("--steps", help="with --auto: the canary shares, e.g. 10,25,50 (default)")
    deploy.add_argument("--step-s", type=float, help="with --auto: seconds at each step (default 60)")
    deploy.add_argument("--gate-dataset", help="also gate on the held-out photos of these collected datasets "
                        "('name,name' or 'all'; default: those the archive was retrained on)")
    canary = actions.add_parser("canary", help="send PERCENT of traffic to a deployed VERSION (0 stops the canary)")
    canary.add_argument("version")
    canary.add_argument("percent", type=float)
    promote = actions.add_parser("promote", help="make a version (default: the canary) the default, drain the old")
    promote.add_argument("version", nargs="?")
    rollback = actions.add_parser("rollback", help="make an earlier default the default again (by default the one "
                                  "before the current default; rolling back twice steps back twice)")
    rollback.add_argument("version", nargs="?", help="an earlier default to return to")
    retire = actions.add_parser("retire", help="drain and unregister a version that is not the default")
    retire.add_argument("version")
    remove = actions.add_parser("remove-archive", help="delete an archive nothing needs from model_store/ (a "
                                "refused candidate: not deployed, never a default)")
    remove.add_argument("archive", help="a .mar in model_store/ (its file name, or its path)")


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


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _print_history(answer: dict) -> None:
    print(f"rollback goes to: {answer.get('rollback_target') or 'nothing (no earlier default left)'}")
    print(f"{'when':<20} {'version':<10} {'how':<10} {'by':<20} rolled back")
    for change in answer["history"]:
        print(f"{_when(change['at']):<20} {change['version']:<10} {change['action']:<10} {change['actor']:<20} "
              f"{'yes' if change['rolled_back'] else ''}")


def _print_audit(answer: dict) -> None:
    print(f"{'when':<20} {'who':<16} {'action':<9} {'outcome':<32} fields")
    for entry in answer["entries"]:
        print(f"{_when(entry['at']):<20} {entry['actor']:<16} {entry['action']:<9} {entry['outcome']:<32} "
              f"{json.dumps(entry['detail'])}")


def _print_result(action: str, answer: dict) -> None:
    """One line saying what changed, as an operator reads it."""
    if action == "deploy":
        share = f", canary {answer['canary_percent']:g}%" if answer.get("canary_percent") else ", no traffic yet"
        gates = ", ".join(f"{key} {value:.3f}" for key, value in answer.items() if key.endswith("accuracy"))
        print(f"deployed {answer['model']} {answer['version']} (gate: {gates}){share}")
        if answer.get("analysis"):
            policy = answer["analysis"]["policy"]
            print(f"canary analysis started: {', '.join(f'{step:g}%' for step in policy['steps'])}, "
                  f"{policy['step_s']:g} s each; `models list` shows how it goes")
    elif action == "canary":
        print(f"canary: {answer['canary'] or 'none'} at {answer['canary_percent']:g}%")
    elif action in ("promote", "rollback"):
        print(f"default is now {answer['default']}; {answer['retired']} drained and retired")
    elif action == "remove-archive":
        print(f"removed {answer['removed']} (version {answer['version']}) from the model store")
    else:
        print(f"retired {answer['retired']}")


def _print_versions(answer: dict) -> None:
    analysis = answer.get("analysis")
    if analysis:
        print(f"canary analysis of {analysis['version']}: {analysis['state']} at step {analysis['step']} "
              f"({analysis['percent']:g}%){': ' + analysis['reason'] if analysis.get('reason') else ''}")

    def figure(value: float | None) -> str:
        return "" if value is None else f"{value:.4f}"

    print(f"{'version':<10} {'default':<8} {'canary%':<8} {'workers':<8} {'in-flight':<10} {'quality':<72} "
          f"{'held-out':<9} {'arch':<20} {'archive':<28} datasets")
    for row in answer["versions"]:
        print(f"{row['version']:<10} {'yes' if row['default'] else '':<8} {row['canary_percent']:<8g} "
              f"{row['workers']:<8} {row['in_flight']:<10} {quality(row):<72} "
              f"{figure(row.get('heldout_acc')):<9} {row.get('arch') or '':<20} {row['archive']:<28} "
              f"{', '.join(row.get('datasets') or [])}")


def quality(version: dict) -> str:
    """The evaluation the version's weights carry (scripts/evaluate.py --record: held-out photos; fit_head.py: on
    sources left out), else its checkpoint's val_acc."""
    evaluation, unseen = version.get("evaluation"), version.get("evaluation_by_source")
    parts = []
    if isinstance(evaluation, dict):
        parts.append(f"acc {evaluation['accuracy']:.3f} fix {evaluation['fix']:.0%} "
                     f"harm {evaluation['harmed']}/{evaluation['upright']}")
    elif version.get("val_acc") is not None:
        parts.append(f"val_acc {version['val_acc']:.4f} (checkpoint)")
    if isinstance(unseen, dict):
        food = unseen.get("food_fix")  # None where no food group was scored
        parts.append(f"unseen sources: worst harm {unseen['worst_harm']:.0%}"
                     + ("" if food is None else f", food fix {food:.0%}"))
    return "; ".join(parts)


class Refused(Exception):
    """The proxy refused the call (its status and reason are in the message), or did not answer (`status` 0)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def admin_call(url: str, model: str | None, token: str, method: str, path: str, body: dict | None = None) -> dict:
    """One call of the proxy's admin API (under /admin/models/`model`, or /admin with no model); its JSON answer,
    or Refused saying why not."""
    base = f"{url.rstrip('/')}/admin" + ("" if model is None else f"/models/{model}")
    try:
        answer = requests.request(method, f"{base}{path}", json=body,
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


def auto_policy(args: argparse.Namespace) -> bool | dict | None:
    """What --auto, --steps and --step-s ask of the canary analysis (None: no analysis)."""
    if not getattr(args, "auto", False):
        return None
    policy = {"steps": [float(step) for step in args.steps.split(",")]} if args.steps else {}
    if args.step_s is not None:
        policy["step_s"] = args.step_s
    return policy or True


def store_name(archive: str | None) -> str | None:
    """An archive as the API takes it, a file name in model_store/: the path tab-completion gives
    (model_store/x.mar) becomes x.mar; any other path is sent as it is, and refused with the reason."""
    if archive is None:
        return None
    path = Path(archive)
    store = ProxySettings.from_env(os.environ).model_store
    return path.name if "/" in archive and path.parent.resolve() == store.resolve() else archive


def run(args: argparse.Namespace) -> int:
    archive = store_name(getattr(args, "archive", None))
    calls = {
        "list": ("GET", "", None),
        "history": ("GET", "", None),
        "audit": ("GET", f"/audit?limit={getattr(args, 'limit', 50)}", None),
        "deploy": ("POST", "/deploy", {"archive": archive, "auto": auto_policy(args),
                                       "canary": getattr(args, "canary", 0),
                                       "gate_dataset": getattr(args, "gate_dataset", None)}),
        "canary": ("POST", "/canary", {"version": getattr(args, "version", None),
                                       "percent": getattr(args, "percent", 0)}),
        "promote": ("POST", "/promote", {"version": getattr(args, "version", None)}),
        "rollback": ("POST", "/rollback", {"version": getattr(args, "version", None)}),
        "retire": ("POST", "/retire", {"version": getattr(args, "version", None)}),
        "remove-archive": ("DELETE", f"/archives/{quote(archive or '', safe='')}", None),
    }
    method, path, body = calls[args.action]
    try:
        document = admin_call(args.url, None if args.action == "audit" else args.model, admin_token(args.token),
                              method, path, body)
    except Refused as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(document))
    else:
        {"list": _print_versions, "history": _print_history, "audit": _print_audit}.get(
            args.action, lambda answer: _print_result(args.action, answer))(document)
    return 0

