"""Stand-ins for TorchServe's management API and the smoke gate, for the control plane's unit tests (the real
ones run in tests/integration)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from auth_plugin.control.actual.torchserve_admin import ManagementError, VersionState
from auth_plugin.control.archive_catalogue import ArchiveInfo
from auth_plugin.control.smoke_gate import GateRefused, unseen_sources_problem


class FakeAdmin:
    def __init__(self, versions: dict[str, str], default: str) -> None:
        self.live = dict(versions)  # version -> archive
        self.default = default
        self.calls: list[tuple] = []
        self.broken: set[str] = set()  # archives whose workers never start

    async def versions(self, model: str) -> list[VersionState]:
        return [VersionState(v, a, 2, v == self.default) for v, a in self.live.items()]

    async def register(self, model: str, version: str, archive: str, workers: int, timeout_s: float) -> None:
        self.calls.append(("register", archive))
        if archive in self.broken:
            raise ManagementError(500, "Failed to start workers for model")
        self.live[archive.removesuffix(".mar").split("-v")[-1]] = archive

    async def set_default(self, model: str, version: str) -> None:
        self.calls.append(("set_default", version))
        self.default = version

    async def unregister(self, model: str, version: str) -> None:
        self.calls.append(("unregister", version))
        if version not in self.live:
            raise ManagementError(404, f"Model version: {version} does not exist for model: {model}")
        del self.live[version]


class FakeGate:
    """Passes every version except those in `refuse`."""

    def __init__(self, refuse: Sequence[str] = ()) -> None:
        self.refuse = set(refuse)
        self.checked: list[str] = []
        self.baselines: list[str | None] = []

    async def check(self, model: str, version: str, held_out: Sequence[Path] = (),
                    baseline: str | None = None) -> dict[str, float]:
        self.checked.append(version)
        self.baselines.append(baseline)
        if version in self.refuse:
            raise GateRefused(f"accuracy 0.250 on the gate's samples is below 0.9 ({version})")
        return {"gate_accuracy": 1.0}

    def check_recorded(self, info: ArchiveInfo) -> dict[str, float]:
        """The real rule on what the archive recorded (it reads no photos)."""
        problem = unseen_sources_problem(info, 0.01)
        if problem:
            raise GateRefused(problem)
        return {}
