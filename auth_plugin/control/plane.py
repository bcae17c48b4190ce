"""The control plane as a part of the gateway: its lock (one control plane per TorchServe), its parts started and
stopped with the gateway (the smoke gate, the rollouts, the canary analysis, the default history, the pods'
coordination, the reconciler), and its HTTP API mounted at /admin (admin_api.py).

    desired/   what should be served: the routing table (versions.py) and the rollout intended (intents.py)
    actual/    what TorchServe has: registered versions and live workers (torchserve_admin.py), every pod's (pods.py)
    steps/     between the two: rollout.py (deploy, promote, roll back, retire), reconciler.py (TorchServe brought
               back to the table every few seconds), recovery.py (an interrupted intent finished or undone)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from auth_plugin.app_keys import ANALYST, KEYS, PODS, REGISTRY, ROLLOUTS, SESSION, SETTINGS, SIGNALS, TORCHSERVE
from auth_plugin.control.actual.pods import coordination, heartbeat
from auth_plugin.control.admin_api import control_app
from auth_plugin.control.canary_analysis import CanaryAnalyst
from auth_plugin.control.history import History
from auth_plugin.control.plane_lock import ControlPlaneLock
from auth_plugin.control.smoke_gate import SmokeGate
from auth_plugin.control.steps.reconciler import Reconciler
from auth_plugin.control.steps.rollout import Rollouts, RolloutSettings
from auth_plugin.migrations import open_database
from auth_plugin.settings import ProxySettings


def rollout_settings(settings: ProxySettings) -> RolloutSettings:
    return RolloutSettings(settings.model_store, settings.deploy_workers, settings.register_timeout_s,
                           settings.drain_timeout_s, 2 * settings.state_refresh_s if settings.database_url else 0.0)


async def plane_lock(app: web.Application) -> AsyncIterator[None]:
    """Taken before anything else opens: ControlPlaneTaken stops the start, since a second control plane of the same
    model on one TorchServe would undo this one's deploys."""
    settings = app[SETTINGS]
    lock = ControlPlaneLock(settings.torchserve_key_file, settings.model_name)
    if settings.control_plane:
        lock.acquire()
    yield
    lock.release()


def _background_tasks(app: web.Application, history: History, settings: RolloutSettings) -> list[asyncio.Task]:
    """On a shared database, this pod's heartbeat; the reconciler and the recovery of interrupted rollouts."""
    proxy = app[SETTINGS]
    if not proxy.control_plane:
        return []
    tasks = []
    if proxy.database_url:
        tasks.append(asyncio.create_task(heartbeat(app[PODS], app[TORCHSERVE], app[REGISTRY], proxy.model_name,
                                                   proxy.state_refresh_s)))
    reconciler = Reconciler(app[TORCHSERVE], app[REGISTRY], history, settings, app[ROLLOUTS].lock, app[ROLLOUTS].gate)
    tasks.append(asyncio.create_task(reconciler.forever(proxy.model_name, proxy.reconcile_interval_s)))
    tasks.append(asyncio.create_task(app[ROLLOUTS].recover_forever(proxy.model_name, proxy.reconcile_interval_s)))
    return tasks


async def control_plane(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    gate = SmokeGate(app[SESSION], app[KEYS], settings.inference_url, settings.gate_dir, settings.gate_min_accuracy,
                     settings.gate_real_dir, settings.gate_tolerance, max_unseen_harm=settings.gate_max_unseen_harm)
    steps = rollout_settings(settings)
    history = History(open_database(settings))
    app[PODS], driver, intents = coordination(settings)
    app[ROLLOUTS] = Rollouts(app[TORCHSERVE], app[REGISTRY], gate, steps, history, pods=app[PODS], driver=driver,
                             intents=intents)
    app[ANALYST] = CanaryAnalyst(app[ROLLOUTS], app[REGISTRY], app[SIGNALS])
    tasks = _background_tasks(app, history, steps)
    yield
    await app[ANALYST].stop()
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    history.close()
    app[PODS].close()
    driver.close()
    intents.close()


def setup(app: web.Application) -> None:
    """Its parts after the gateway's shared ones (the lock is create_app's first step), its API at /admin."""
    app.cleanup_ctx.append(control_plane)
    app.add_subapp("/admin", control_app())
