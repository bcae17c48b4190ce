"""One control plane per model of a TorchServe. Two proxies in front of one TorchServe each ran a reconciler, and one
unregistered the version the other was gating. Until several proxies share their state, the second one for a model
refuses to start: it takes an exclusive lock on a file named for the model beside TorchServe's key file, where every
proxy of that TorchServe looks, and the kernel drops it if the process dies (no stale lock to clean up by hand).
A reconciler touches its own model's versions only, so gateways of different models on one TorchServe (as
TorchServe serves several) do not conflict and each holds its own lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class ControlPlaneTaken(RuntimeError):
    pass


class ControlPlaneLock:
    def __init__(self, torchserve_key_file: Path, model: str) -> None:
        self.model = model
        self.path = torchserve_key_file.parent / f"control-plane-{model}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ControlPlaneTaken(f"another proxy (pid {holder}) already manages {self.model} on this TorchServe "
                                    f"({self.path}); run one control plane per model, or stop the other first"
                                    ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None
