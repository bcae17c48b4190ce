"""Where a retrain starts: `--init` (served, demo, NAME.mar or PATH.pth) resolved to a weights file with its .json.

By default the version the proxy serves (asked of its admin API); offline, with --no-deploy only, the model store's
newest archive, with a note saying it may not be the one served.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from auth_plugin.control.models_cli import Refused, find_admin_token
from auth_plugin.settings import ROOT
from operations.served_weights import ServedWeightsError, newest_archive, served_archive, served_weights

DEMO_WEIGHTS = ROOT / "weights" / "food_rotation_demo.pth"


def served_or_newest(args: argparse.Namespace) -> Path:
    """The default version's archive, as the proxy says; offline (--no-deploy only) the model store's newest."""
    token = find_admin_token(args.token)
    try:
        if token is None:
            raise Refused("error: no admin token to ask the proxy with (--token, PROXY_ADMIN_TOKEN or "
                          ".run/proxy/admin_token)")
        version, archive = served_archive(args.url, args.model, token)
    except Refused as exc:
        if exc.status or not args.no_deploy:
            raise SystemExit(f"{exc}\nerror: cannot tell which version of {args.model} is served: start the "
                             "service (make serve), or name what to fine-tune: --init NAME.mar, --init demo or "
                             "--init PATH.pth") from exc
        return newest_with_a_note(args, str(exc).removeprefix("error: "))
    if not (args.model_store / archive).is_file():
        raise SystemExit(f"error: the proxy serves {args.model} {version} from {archive}, which is not in "
                         f"{args.model_store}: pass the proxy's --model-store")
    print(f"the proxy serves {args.model} {version} by default ({archive}): fine-tuning it")
    return args.model_store / archive


def newest_with_a_note(args: argparse.Namespace, reason: str) -> Path:
    newest = newest_archive(args.model_store, args.model)
    if newest is None:
        raise SystemExit(f"error: {reason}, and {args.model_store} holds no archive of {args.model}: pass "
                         "--init demo or --init PATH.pth")
    version, archive = newest
    print(f"note: {reason}\nnote: --no-deploy offline: fine-tuning the newest archive in {args.model_store}, "
          f"{archive} ({version}), which may not be the version served (a canary never promoted, or one the gate "
          "refused); --init NAME.mar or --init demo chooses another")
    return args.model_store / archive


def starting_weights(args: argparse.Namespace, scratch: Path) -> Path:
    """--init as a weights file with its .json beside it (archives are unpacked into `scratch`)."""
    if args.init == "demo":
        return DEMO_WEIGHTS
    if args.init == "served":
        archive = served_or_newest(args)
    elif args.init.endswith(".mar"):
        given = Path(args.init)
        archive = given if given.is_file() or len(given.parts) > 1 else args.model_store / given
    else:
        weights = Path(args.init)
        if not (weights.is_file() and weights.with_suffix(".json").is_file()):
            raise SystemExit(f"error: --init {weights}: no such weights file with its .json beside it")
        return weights
    try:
        return served_weights(archive, scratch)
    except ServedWeightsError as exc:
        raise SystemExit(f"error: {exc}") from exc
