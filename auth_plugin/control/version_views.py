"""What the admin page and `models list` show of a model: its versions (routing, workers, in flight, what each
archive says of itself) and the archives in the store that could be deployed."""

from __future__ import annotations

from typing import Any

from auth_plugin.control.archive_catalogue import ArchiveInfo
from auth_plugin.control.desired.versions import VersionRegistry
from auth_plugin.control.steps.rollout import Rollouts


async def versions(rollouts: Rollouts, registry: VersionRegistry, model: str) -> list[dict[str, Any]]:
    route = registry.route(model)
    live = {state.version: state for state in await rollouts.live_versions(model)}
    deployed = registry.versions(model)
    metadata = await rollouts.catalogue.metadata(list(deployed.values()))
    rows = []
    for version, archive in deployed.items():
        described, state = ArchiveInfo(model, version, metadata[archive]), live.get(version)
        rows.append({
            "version": version, "archive": archive,
            "default": route is not None and route.default == version,
            "canary_percent": route.canary_percent if route and route.canary == version else 0.0,
            "workers": state.workers if state else 0,
            "in_flight": registry.in_flight_count(model, version),
            "arch": described.metadata.get("arch"), "train_acc": described.metadata.get("train_acc"),
            "val_acc": described.metadata.get("val_acc"), "evaluation": described.metadata.get("evaluation"),
            "evaluation_by_source": described.metadata.get("evaluation_by_source"),
            "sha256": described.metadata.get("weights_sha256"),
            "created_at": described.metadata.get("created_at"), **described.trained_on(),
        })
    return rows


async def archives(rollouts: Rollouts, registry: VersionRegistry, model: str) -> list[dict[str, Any]]:
    """The model's archives in the model store, deployed or not: what the admin page can deploy."""
    deployed = set(registry.versions(model).values())
    return [{"archive": name, "version": info.version, "deployed": name in deployed,
             "val_acc": info.metadata.get("val_acc"), "evaluation": info.metadata.get("evaluation"),
             "evaluation_by_source": info.metadata.get("evaluation_by_source"),
             "created_at": info.metadata.get("created_at"),
             **info.trained_on()}
            for name, info in (await rollouts.catalogue.of_model(model)).items()]
