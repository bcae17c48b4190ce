"""Processes by pid file, and free loopback ports: the plumbing under serving.py's servers."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


class ServingError(Exception):
    """TorchServe or the gateway did not start, or did not become ready in time."""

def free_ports(count: int) -> list[int]:
    """Loopback ports nobody listens on right now (for tests and the bench)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def alive(pid: int) -> bool:
    """Running, and not a zombie: a stopped server whose parent has gone may never be reaped here."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def running_pid(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file`, if that process still runs."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def stop_recorded(pid_file: Path, timeout: float) -> bool:
    """Stop the process recorded in `pid_file` and forget it; True if it was running."""
    pid = running_pid(pid_file)
    if pid is not None:
        terminate(pid, timeout)
    pid_file.unlink(missing_ok=True)
    return pid is not None


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
