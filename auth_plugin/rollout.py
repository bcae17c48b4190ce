"""Version changes that lose no request: register -> smoke gate -> canary -> promote -> drain -> unregister.

TorchServe registers versions and switches its default, but it does not drain (unregistering kills workers with
requests in flight, pytorch/serve#1101) and has no canary split. The proxy routes every prediction to an
explicit version, so it knows what is in flight where, and only unregisters a version nothing is using.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auth_plugin.smoke_gate import GateRefused, SmokeGate
from auth_plugin.torchserve_admin import ManagementError, TorchServeAdmin, VersionState
from auth_plugin.versions import Route, VersionRegistry
from service_error import ServiceError

log = logging.getLogger("auth_plugin.rollout")
_ARCHIVE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.mar$")


class RolloutError(ServiceError):
    """A refused control-plane call: `status` (400/404/409/422/502) and a code naming why."""


@dataclass(frozen=True)
class RolloutSettings:
    model_store: Path
    workers: int = 2
    register_timeout_s: float = 180.0
    drain_timeout_s: float = 60.0


def read_archive(model_store: Path, archive: str) -> dict[str, Any]:
    """The manifest's model name and version plus metadata.json of an archive directly in the model store."""
    if "/" in archive or "\\" in archive or ".." in archive or "://" in archive or not _ARCHIVE_NAME.match(archive):
        raise RolloutError(400, "bad_archive_name",
                           "give the file name of a .mar directly inside model_store/ (no paths, no URLs)")
    path = model_store / archive
    if not path.is_file():
        raise RolloutError(404, "archive_not_found", f"{archive} is not in the model store")
    try:
        with zipfile.ZipFile(path) as mar:
            manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))["model"]
            metadata = json.loads(mar.read("metadata.json")) if "metadata.json" in mar.namelist() else {}
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise RolloutError(400, "bad_archive", f"{archive} is not a model archive: {exc}") from exc
    return {"model": manifest["modelName"], "version": manifest["modelVersion"], "metadata": metadata}


def _dataset_names(metadata: dict[str, Any]) -> list[str]:
    """The collected datasets a version was retrained on: `datasets` (a list), or `dataset` (one: archives
    retrained before several datasets could be combined)."""
    entries = metadata.get("datasets")
    if not isinstance(entries, list):
        entries = [metadata["dataset"]] if isinstance(metadata.get("dataset"), dict) else []
    return [str(entry["name"]) for entry in entries if isinstance(entry, dict) and entry.get("name")]


def _trained_on(metadata: dict[str, Any]) -> dict[str, Any]:
    """The collected datasets a version was retrained on, and its accuracy on their held-out photos."""
    return {"datasets": _dataset_names(metadata), "heldout_acc": metadata.get("heldout_acc")}


class Rollouts:
    def __init__(self, admin: TorchServeAdmin, registry: VersionRegistry, gate: SmokeGate,
                 settings: RolloutSettings) -> None:
        self._admin = admin
        self._registry = registry
        self._gate = gate
        self._settings = settings
        self._lock = asyncio.Lock()  # one change at a time, the reconciler included

    async def _torchserve(self, call: Any, *args: Any) -> Any:
        try:
            return await call(*args)
        except ManagementError as exc:
            status = 502 if exc.status in (0, 500) else exc.status
            raise RolloutError(status, "torchserve_refused", exc.message) from exc

    async def describe(self, model: str) -> list[dict[str, Any]]:
        route = self._registry.route(model)
        live = {state.version: state for state in await self._torchserve(self._admin.versions, model)}
        rows = []
        for version, archive in self._registry.versions(model).items():
            try:
                metadata = read_archive(self._settings.model_store, archive)["metadata"]
            except RolloutError:
                metadata = {}
            state = live.get(version)
            rows.append({
                "version": version, "archive": archive,
                "default": route is not None and route.default == version,
                "canary_percent": route.canary_percent if route and route.canary == version else 0.0,
                "workers": state.workers if state else 0,
                "in_flight": self._registry.in_flight_count(model, version),
                "arch": metadata.get("arch"), "train_acc": metadata.get("train_acc"),
                "val_acc": metadata.get("val_acc"), "sha256": metadata.get("weights_sha256"),
                "created_at": metadata.get("created_at"), **_trained_on(metadata),
            })
        return rows

    def trained_on(self, archive: str) -> list[str]:
        """The collected datasets an archive was retrained on (its metadata.json says); none for others."""
        return _dataset_names(read_archive(self._settings.model_store, archive)["metadata"])

    async def archives(self, model: str) -> list[dict[str, Any]]:
        """The archives of `model` in the model store, deployed or not: what the admin page can deploy."""
        deployed = set(self._registry.versions(model).values())
        rows = []
        for path in sorted(self._settings.model_store.glob("*.mar")):
            try:
                info = await asyncio.to_thread(read_archive, self._settings.model_store, path.name)
            except RolloutError:
                continue
            if info["model"] == model:
                metadata = info["metadata"]
                rows.append({"archive": path.name, "version": info["version"], "deployed": path.name in deployed,
                             "val_acc": metadata.get("val_acc"), "created_at": metadata.get("created_at"),
                             **_trained_on(metadata)})
        return rows

    def _route(self, model: str) -> Route:
        route = self._registry.route(model)
        if route is None:
            raise RolloutError(404, "unknown_model", f"no versions of {model} are deployed")
        return route

    def _known(self, model: str, version: str) -> str:
        archive = self._registry.versions(model).get(version)
        if archive is None:
            raise RolloutError(404, "unknown_version", f"{model} has no deployed version {version}")
        return archive

    async def _register_and_gate(self, model: str, version: str, archive: str,
                                 held_out: Sequence[Path] = ()) -> dict[str, float]:
        """Register with workers (synchronously), then the smoke gate; a refused version is unregistered."""
        try:
            await self._admin.register(archive, self._settings.workers, self._settings.register_timeout_s)
        except ManagementError as exc:
            if exc.status != 500:  # 409 already registered, 404 not found, ...: TorchServe's own answer
                raise RolloutError(502 if exc.status == 0 else exc.status, "torchserve_refused", exc.message) from exc
            await self._unregister_quietly(model, version)  # wrong weights, a handler that raises at load, ...
            raise RolloutError(422, "gate_refused", f"version {version} refused: its workers did not start "
                               f"({exc.message}); TorchServe's model_log.log has the handler's error") from exc
        try:
            return await self._gate.check(model, version, held_out)
        except GateRefused as exc:
            log.warning("smoke gate refused %s %s: %s", model, version, exc)
            await self._unregister_quietly(model, version)
            raise RolloutError(422, "gate_refused", f"version {version} refused by the smoke gate: {exc}") from exc

    async def _unregister_quietly(self, model: str, version: str) -> None:
        try:
            await self._admin.unregister(model, version)
        except ManagementError as exc:
            if exc.status != 404:  # 404: TorchServe already dropped it
                log.exception("could not unregister refused version %s %s", model, version)

    async def deploy(self, model: str, archive: str, canary_percent: float = 0.0,
                     held_out: Sequence[Path] = ()) -> dict[str, Any]:
        """Register, gate (on `held_out` photos too, when given), then route `canary_percent` of traffic to it."""
        if not 0 <= canary_percent <= 100:
            raise RolloutError(400, "bad_canary", "canary must be a percentage between 0 and 100")
        info = read_archive(self._settings.model_store, archive)
        if info["model"] != model:
            raise RolloutError(400, "wrong_model", f"{archive} holds model {info['model']!r}, not {model!r}")
        version = info["version"]
        async with self._lock:
            route = self._route(model)
            live = {state.version for state in await self._torchserve(self._admin.versions, model)}
            if version in self._registry.versions(model) or version in live:
                raise RolloutError(409, "version_exists", f"{model} {version} is already deployed")
            accuracy = await self._register_and_gate(model, version, archive, held_out)
            self._registry.add_version(model, version, archive)
            if canary_percent > 0:
                self._registry.set_route(model, route.with_canary(version, canary_percent))
        log.info("deployed %s %s from %s (%s, canary %s%%)", model, version, archive, accuracy, canary_percent)
        return {"model": model, "version": version, **accuracy, "canary_percent": canary_percent}

    async def set_canary(self, model: str, version: str, percent: float) -> dict[str, Any]:
        if not 0 <= percent <= 100:
            raise RolloutError(400, "bad_canary", "canary must be a percentage between 0 and 100")
        async with self._lock:
            route = self._route(model)
            self._known(model, version)
            if version == route.default:
                raise RolloutError(409, "is_default", f"{version} is the default; a canary is another version")
            self._registry.set_route(model, route.with_canary(version, percent))
        return {"model": model, "canary": version if percent else None, "canary_percent": percent}

    async def promote(self, model: str, version: str | None = None) -> dict[str, Any]:
        async with self._lock:
            route = self._route(model)
            version = version or route.canary
            if version is None:
                raise RolloutError(409, "nothing_to_promote", "no version given and no canary set")
            self._known(model, version)
            if version == route.default:
                raise RolloutError(409, "is_default", f"{version} is already the default")
            await self._switch(model, route, version)
        return {"model": model, "default": version, "retired": route.default}

    async def rollback(self, model: str) -> dict[str, Any]:
        async with self._lock:
            route = self._route(model)
            if route.previous is None or route.previous_archive is None:
                raise RolloutError(409, "no_previous_version", "there is no earlier default to roll back to")
            previous, archive = route.previous, route.previous_archive
            if previous not in self._registry.versions(model):
                live = {state.version for state in await self._torchserve(self._admin.versions, model)}
                if previous not in live:
                    read_archive(self._settings.model_store, archive)  # still there, still an archive
                    await self._register_and_gate(model, previous, archive)
                self._registry.add_version(model, previous, archive)
            await self._switch(model, route, previous)
        return {"model": model, "default": previous, "retired": route.default}

    async def retire(self, model: str, version: str) -> dict[str, Any]:
        async with self._lock:
            route = self._route(model)
            self._known(model, version)
            if version == route.default:
                raise RolloutError(409, "is_default", f"{version} is the default: promote another version first")
            if route.canary == version:
                self._registry.set_route(model, route.with_canary(None, 0))
            await self._drain_and_unregister(model, version)
        return {"model": model, "retired": version}

    async def _switch(self, model: str, route: Route, version: str) -> None:
        """Make `version` the default (TorchServe and routing), then drain and unregister the old default."""
        old = route.default
        await self._torchserve(self._admin.set_default, model, version)
        self._registry.set_route(model, Route(default=version, previous=old,
                                              previous_archive=self._registry.versions(model).get(old)))
        await self._drain_and_unregister(model, old)

    async def _drain_and_unregister(self, model: str, version: str) -> None:
        deadline = time.monotonic() + self._settings.drain_timeout_s
        while self._registry.in_flight_count(model, version) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._registry.in_flight_count(model, version) > 0:
            log.warning("%s %s still had requests in flight after %ss", model, version,
                        self._settings.drain_timeout_s)
        self._registry.remove_version(model, version)
        await self._torchserve(self._admin.unregister, model, version)

    def _forget_lost_version(self, model: str, route: Route, version: str, archive: str,
                             live: dict[str, VersionState]) -> Route:
        """An archive deleted from the model store cannot be restored: serve what TorchServe has, loudly."""
        log.error("%s %s cannot be restored: %s is gone from the model store; dropping it from the routing table",
                  model, version, archive)
        self._registry.remove_version(model, version)
        if route.canary == version:
            route = route.with_canary(None, 0)
        if route.default == version:
            fallback = next((state for state in live.values() if state.is_default), None)
            if fallback is None:
                return route
            log.error("%s now routes to TorchServe's default %s", model, fallback.version)
            self._registry.add_version(model, fallback.version, fallback.archive)
            route = Route(default=fallback.version)
        self._registry.set_route(model, route)
        return route

    async def reconcile(self, model: str) -> None:
        """Make TorchServe serve what the registry says (after a restart of either); adopt TorchServe's state once."""
        async with self._lock:
            live = {state.version: state for state in await self._admin.versions(model)}
            route = self._registry.route(model)
            if route is None:
                default = next((state for state in live.values() if state.is_default), None)
                if default is not None:
                    self._registry.add_version(model, default.version, default.archive)
                    self._registry.set_route(model, Route(default=default.version))
                return
            for version, archive in self._registry.versions(model).items():
                if version in live:
                    continue
                if not (self._settings.model_store / archive).is_file():
                    route = self._forget_lost_version(model, route, version, archive, live)
                    continue
                log.info("restoring %s %s from %s", model, version, archive)
                await self._admin.register(archive, self._settings.workers, self._settings.register_timeout_s)
            wanted = self._registry.versions(model)
            live = {state.version: state for state in await self._admin.versions(model)}
            if route.default in live and not live[route.default].is_default:
                await self._admin.set_default(model, route.default)
            for version in live:
                if version not in wanted:  # e.g. what load_models registered at TorchServe's start
                    log.info("unregistering %s %s: not in the routing table", model, version)
                    await self._admin.unregister(model, version)
