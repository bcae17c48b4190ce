"""A small subset of Kustomize, enough to render deploy/kubernetes/ without kubectl (compared with
`kubectl kustomize` by hand: the same objects): `resources` (files
and folders), `components`, `namespace`, `labels` (pairs, includeTemplates; never selectors), `images`,
`configMapGenerator` (files, envs, behavior create/merge, a content-hash name suffix (not Kustomize's own digest)
and the references to it in pod specs) and strategic-merge `patches` (maps merged, containers/env/volumes merged by
name, volumeMounts by mountPath, ports by containerPort, other lists replaced). A kustomization using anything else
fails the render, so the subset cannot silently drift from what the manifests use."""

from __future__ import annotations

import copy
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"

Object = dict[str, Any]

SUPPORTED = {"apiVersion", "kind", "resources", "components", "namespace", "labels", "images", "configMapGenerator",
             "patches"}
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath", "ports": "containerPort"}
CLUSTER_SCOPED = {"Namespace"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}
GENERATED = "__generated_name__"  # marks a generated ConfigMap until the top level gives it its hash suffix


def _build(folder: Path, objects: list[Object]) -> list[Object]:
    document = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(document) - SUPPORTED
    assert not unknown, f"{folder}: {sorted(unknown)} is not in this test's Kustomize subset"
    for entry in document.get("resources", []):
        path = folder / entry
        objects += _build(path, []) if path.is_dir() else [o for o in yaml.safe_load_all(path.read_text()) if o]
    for generator in document.get("configMapGenerator", []):
        _generate(folder, generator, objects)
    for component in document.get("components", []):
        assert yaml.safe_load((folder / component / "kustomization.yaml").read_text())["kind"] == "Component"
        objects = _build(folder / component, objects)
    for patch in document.get("patches", []):
        assert set(patch) == {"path"}, f"{folder}: only `patches: - path:` (strategic merge) is rendered here"
        change = yaml.safe_load((folder / patch["path"]).read_text())
        (target,) = [o for o in objects if (o["kind"], o["metadata"]["name"]) ==
                     (change["kind"], change["metadata"]["name"])]
        _merge(target, change)
    for obj in objects:
        if "namespace" in document and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = document["namespace"]
        for labels in document.get("labels", []):
            assert set(labels) <= {"pairs", "includeTemplates"}, "labels: selectors are written out, never added"
            obj["metadata"].setdefault("labels", {}).update(labels["pairs"])
            if labels.get("includeTemplates") and obj["kind"] in WORKLOADS:
                obj["spec"]["template"]["metadata"].setdefault("labels", {}).update(labels["pairs"])
        for image in document.get("images", []):
            for container in containers(obj):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return objects


def _generate(folder: Path, generator: dict[str, Any], objects: list[Object]) -> None:
    assert set(generator) <= {"name", "files", "envs", "behavior"}, generator
    data = {Path(name).name: (folder / name).read_text() for name in generator.get("files", [])}
    for name in generator.get("envs", []):
        for line in (folder / name).read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, value = line.split("=", 1)
                data[key.strip()] = value
    behavior = generator.get("behavior", "create")
    if behavior == "create":
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]},
                        "data": data, GENERATED: generator["name"]})
    else:
        assert behavior == "merge", behavior
        (existing,) = [o for o in objects if o.get(GENERATED) == generator["name"]]
        existing["data"].update(data)


def _merge(target: dict[str, Any], change: dict[str, Any]) -> None:
    """A strategic merge patch, as far as the manifests use one."""
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(target.get(key), list):
            by_key = {item[MERGE_KEYS[key]]: item for item in target[key]}
            for item in value:
                if item[MERGE_KEYS[key]] in by_key:
                    _merge(by_key[item[MERGE_KEYS[key]]], item)
                else:
                    target[key].append(copy.deepcopy(item))
        else:
            target[key] = copy.deepcopy(value)


def _suffix(data: dict[str, str]) -> str:
    """A content hash for a generated name, as Kustomize adds one (not its exact digest: `kubectl kustomize` names
    the same objects with other 10 characters)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


def pod_spec(obj: Object) -> dict[str, Any] | None:
    return obj["spec"]["template"]["spec"] if obj["kind"] in WORKLOADS else None


def containers(obj: Object) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return [] if spec is None else spec.get("initContainers", []) + spec["containers"]


@cache
def _rendered(overlay: str) -> tuple[Object, ...]:
    objects = _build(KUBERNETES / overlay, [])
    renamed = {}
    for obj in objects:
        if GENERATED in obj:
            original = obj.pop(GENERATED)
            renamed[original] = obj["metadata"]["name"] = f"{original}-{_suffix(obj['data'])}"
    for obj in objects:
        spec = pod_spec(obj)
        for volume in (spec or {}).get("volumes", []):
            if "configMap" in volume:
                volume["configMap"]["name"] = renamed.get(volume["configMap"]["name"], volume["configMap"]["name"])
        for container in containers(obj):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    source["configMapRef"]["name"] = renamed.get(source["configMapRef"]["name"],
                                                                 source["configMapRef"]["name"])
            assert all("configMapKeyRef" not in e.get("valueFrom", {}) for e in container.get("env", [])), \
                "configMapKeyRef is not renamed by this test's render"
    return tuple(objects)


def rendered(overlay: str) -> list[Object]:
    return copy.deepcopy(list(_rendered(overlay)))


def one(objects: list[Object], kind: str, name: str | None = None) -> Object:
    (found,) = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    return found


def container(objects: list[Object], name: str) -> dict[str, Any]:
    (found,) = [c for c in containers(one(objects, "Deployment")) if c["name"] == name]
    return found


def config_map(objects: list[Object], prefix: str) -> dict[str, str]:
    (found,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(prefix + "-")]
    return found["data"]


def gateway_settings(objects: list[Object]) -> dict[str, str]:
    return config_map(objects, "food-rotation-gateway")
