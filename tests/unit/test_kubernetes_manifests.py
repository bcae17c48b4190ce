"""deploy/kubernetes/ rendered and checked offline: every object against the Kubernetes schemas (kubernetes-validate,
strict), and the things that matter against the code they describe (ports, probe paths, settings, TorchServe's
configuration, secrets, selectors).

The render is tests/kustomize.py's, a small subset of Kustomize (what it covers is said there). It was compared
with `kubectl kustomize` by hand (the same objects but for the generated names' 10-character hash); no test does it,
since a test that skips where kubectl is missing would count as passing there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from aiohttp import web

from auth_plugin.app import create_app
from auth_plugin.settings import ProxySettings
from operations.torchserve_process import TorchServe, allowed_urls_for, read_properties
from tests.kustomize import (
    KUBERNETES,
    ROOT,
    WORKLOADS,
    Object,
    config_map,
    container,
    containers,
    gateway_settings,
    one,
    pod_spec,
    rendered,
)

PROFILES = ROOT / "deploy" / "profiles"
OVERLAYS = ("base", "overlays/small", "overlays/small-dev")
# The oldest Kubernetes the manifests need (native sidecars, GA in 1.33) and the newest schema bundled.
KUBERNETES_VERSIONS = ("1.33.0", kubernetes_validate.utils.latest_version() + ".0")
TORCHSERVE_PORTS = {8180, 8181, 8182, 8183, 8184}  # config.properties: never published


def everything() -> Iterator[tuple[str, Object]]:
    for overlay in OVERLAYS:
        for obj in rendered(overlay):
            yield overlay, obj


# ---- the tests --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_is_valid_for_kubernetes(overlay: str, version: str) -> None:
    objects = rendered(overlay)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap",
            "Secret", "PersistentVolumeClaim"} <= kinds
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']} on {version}: {exc.message}")


def test_the_dev_overlay_alone_adds_postgresql() -> None:
    assert not [o for o in rendered("overlays/small") if o["kind"] == "StatefulSet"]
    dev = rendered("overlays/small-dev")
    postgres = one(dev, "StatefulSet")
    assert postgres["spec"]["serviceName"] == one(dev, "Service", "food-rotation-postgresql")["metadata"]["name"]
    url = one(dev, "Secret", "food-rotation-secrets")["stringData"]["database-url"]
    password = one(dev, "Secret", "food-rotation-postgresql")["stringData"]["POSTGRES_PASSWORD"]
    assert url == f"postgresql://food_rotation:{password}@food-rotation-postgresql:5432/food_rotation"
    assert "placeholder" in password


def test_only_the_gateway_port_leaves_the_pod() -> None:
    for overlay in OVERLAYS:
        objects = rendered(overlay)
        gateway, torchserve = container(objects, "gateway"), container(objects, "torchserve")
        settings = ProxySettings.from_env(gateway_settings(objects))
        assert gateway["ports"] == [{"name": "http", "containerPort": settings.port, "protocol": "TCP"}]
        assert settings.host == "0.0.0.0"  # the kubelet's probes and the Service come in on the pod IP
        assert "ports" not in torchserve
        properties = read_properties(KUBERNETES / "base" / "config.properties")
        assert all(value.startswith("http://127.0.0.1:") for key, value in properties.items()
                   if key.endswith("_address")), "TorchServe must stay on loopback"
        assert settings.inference_url == properties["inference_address"]
        assert settings.management_url == properties["management_address"]
        (port,) = one(objects, "Service", "food-rotation-serve")["spec"]["ports"]
        assert port["targetPort"] == "http" and port["port"] == settings.port
        policy = one(objects, "NetworkPolicy", "food-rotation-serve")
        (ingress,) = policy["spec"]["ingress"]
        assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
        assert egress_ports == {53, 5432}  # DNS and PostgreSQL, nothing else
        published = {p.get("port") for o in objects if o["kind"] == "Service" for p in o["spec"]["ports"]}
        assert not published & TORCHSERVE_PORTS


def test_probes_ask_routes_the_gateway_serves_without_a_token() -> None:
    app = create_app(ProxySettings())
    public = {route.resource.canonical for route in app.router.routes()
              if route.method == "GET" and getattr(route.handler, "required_scope", None) is None}
    assert {"/healthz", "/readyz"} <= public
    gateway = container(rendered("overlays/small"), "gateway")
    probes = {kind: gateway[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        assert probe["path"] in public and probe["port"] == "http"


def test_the_pod_drains_within_its_grace_period() -> None:
    objects = rendered("overlays/small")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    gateway = container(objects, "gateway")
    settings = ProxySettings.from_env(gateway_settings(objects))
    shutdown_s = web.AppRunner(web.Application())._shutdown_timeout  # what the gateway's listener waits on SIGTERM
    pre_stop_s = gateway["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert settings.read_timeout_s < shutdown_s
    assert pod["terminationGracePeriodSeconds"] >= pre_stop_s + shutdown_s + 15
    # TorchServe is a native sidecar: stopped only after the gateway (the main container) has exited.
    assert container(objects, "torchserve")["restartPolicy"] == "Always"
    assert [c["name"] for c in pod["containers"]] == ["gateway"]


def test_secrets_are_referenced_never_inlined() -> None:
    for overlay, obj in everything():
        if obj["kind"] == "ConfigMap":
            assert not {key for key in obj["data"] if "DATABASE" in key or "SECRET" in key or "PASSWORD" in key}
        for each in containers(obj):
            for variable in each.get("env", []):
                if re.search(r"DATABASE_URL|SECRET|PASSWORD", variable["name"]):
                    assert "value" not in variable, (overlay, variable)
    objects = rendered("overlays/small")
    secret = one(objects, "Secret", "food-rotation-secrets")
    refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in container(objects, "gateway")["env"]
            if "secretKeyRef" in v.get("valueFrom", {})}
    assert refs["PROXY_DATABASE_URL"] == {"name": "food-rotation-secrets", "key": "database-url"}
    assert refs["PROXY_JWT_SECRET"]["name"] == "food-rotation-secrets"
    assert {ref["key"] for ref in refs.values()} <= set(secret["stringData"])
    assert "placeholder" in secret["stringData"]["database-url"].lower()
    assert secret["stringData"]["jwt-hs256-secret"] == ""  # empty: the gateway treats it as unset (JWT off)


def test_selectors_match_the_pods() -> None:
    for overlay in OVERLAYS:
        objects = rendered(overlay)
        for workload in [o for o in objects if o["kind"] in WORKLOADS]:
            labels = workload["spec"]["template"]["metadata"]["labels"]
            selector = workload["spec"]["selector"]["matchLabels"]
            assert selector.items() <= labels.items()
            assert {"app.kubernetes.io/name", "app.kubernetes.io/part-of"} <= set(labels)
        pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert one(objects, "Service", "food-rotation-serve")["spec"]["selector"].items() <= pod_labels.items()
        policy = one(objects, "NetworkPolicy", "food-rotation-serve")
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        target = one(objects, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", one(objects, "Deployment")["metadata"]["name"])
        for obj in objects:
            assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "food-rotation-serve", obj["kind"]


@pytest.mark.parametrize(("overlay", "profile"), [("base", None), ("overlays/small", "small")])
def test_torchserve_gets_the_configuration_make_serve_would_write(overlay: str, profile: str | None) -> None:
    """config.properties in the ConfigMap is checked in, and must be exactly what operations/serving.py writes for the
    pod's model store (the repository's config.properties, the profile's overrides, model_store and allowed_urls
    pinned to the absolute path): nothing else is changed for Kubernetes."""
    objects = rendered(overlay)
    shared = "/srv/shared"
    overrides = read_properties(PROFILES / profile / "config.properties") if profile else {}
    expected = TorchServe(home=Path("/unused"), model_store=Path(shared) / "model_store", overrides=overrides).config
    text = config_map(objects, "food-rotation-torchserve")["config.properties"]
    ours = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            ours[key] = value
    assert ours == expected, "regenerate: " + "".join(f"{k}={v}\n" for k, v in expected.items())
    assert ours["allowed_urls"] == allowed_urls_for(Path(shared) / "model_store")
    torchserve = container(objects, "torchserve")
    command = torchserve["args"][0]
    mounts = {m["mountPath"]: m for m in torchserve["volumeMounts"]}
    assert f"--ts-config {next(p for p in mounts if p.endswith('/torchserve'))}/config.properties" in command
    assert f"--model-store {ours['model_store']}" in command
    assert mounts[shared]["readOnly"] is True


def test_the_gateway_settings_are_real_settings_and_follow_the_profile() -> None:
    known = {f"PROXY_{name.upper()}" for name in ProxySettings.__dataclass_fields__} | {"PROXY_DATABASE_URL"}
    known |= {f"PROXY_JWT_{name.upper()}" for name in ProxySettings().jwt.__dataclass_fields__}
    for overlay in OVERLAYS:
        objects = rendered(overlay)
        data = gateway_settings(objects)
        assert set(data) <= known, set(data) - known
        ProxySettings.from_env(data)  # every value parses
        for variable in container(objects, "gateway")["env"]:
            assert variable["name"] in known | {"PYTHONDONTWRITEBYTECODE", "HOME"}
    small = gateway_settings(rendered("overlays/small"))
    assert read_properties(PROFILES / "small" / "proxy.env").items() <= small.items()


def test_everything_the_code_writes_is_on_a_writable_volume() -> None:
    objects = rendered("overlays/small")
    gateway, torchserve = container(objects, "gateway"), container(objects, "torchserve")
    settings = ProxySettings.from_env(gateway_settings(objects))

    def writable(each: dict[str, Any], path: Path) -> bool:
        return any(path.is_relative_to(m["mountPath"]) and not m.get("readOnly") for m in each["volumeMounts"])

    for path in (settings.torchserve_key_file.parent, settings.token_db.parent, settings.datasets_dir,
                 settings.model_store, Path("/tmp")):
        assert writable(gateway, path), path
    environment = {v["name"]: v["value"] for v in torchserve["env"]}
    for path in (torchserve["workingDir"], environment["TMPDIR"], environment["TEMP"], environment["LOG_LOCATION"]):
        assert writable(torchserve, Path(path)), path
    # The key file TorchServe writes in its working directory is the one the gateway reads.
    assert Path(torchserve["workingDir"]) == settings.torchserve_key_file.parent
    shared_volume = {m["mountPath"]: m["name"] for m in torchserve["volumeMounts"]}[torchserve["workingDir"]]
    assert {m["mountPath"]: m["name"] for m in gateway["volumeMounts"]}[torchserve["workingDir"]] == shared_volume
    claim = one(objects, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_every_container_is_pinned_sized_and_unprivileged() -> None:
    for overlay, obj in everything():
        spec = pod_spec(obj)
        if spec is None:
            continue
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        for each in containers(obj):
            name, _, tag = each["image"].rpartition(":")
            assert name and tag and tag != "latest" and "/" not in tag, (overlay, each["image"])
            assert {"cpu", "memory"} <= set(each["resources"]["requests"]), (overlay, each["name"])
            assert {"cpu", "memory"} <= set(each["resources"]["limits"]), (overlay, each["name"])
            security = each["securityContext"]
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            for port in each.get("ports", []):
                assert port["name"], (overlay, each["name"])


def _quantity(text: str | int) -> float:
    """CPU in cores or memory in bytes, for the suffixes used here."""
    units = {"m": 1e-3, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"([0-9.]+)(m|Mi|Gi)?", str(text))
    assert match, text
    return float(match.group(1)) * units.get(match.group(2) or "", 1)


def test_the_small_pod_fits_one_vcpu_and_two_gib() -> None:
    pod = one(rendered("overlays/small"), "Deployment")["spec"]["template"]["spec"]
    running = pod["containers"] + [c for c in pod["initContainers"] if c.get("restartPolicy") == "Always"]
    assert sum(_quantity(c["resources"]["requests"]["cpu"]) for c in running) == pytest.approx(1.0)
    assert sum(_quantity(c["resources"]["limits"]["memory"]) for c in running) <= 2 * 2**30
    # bench/SMALL_PROFILE.md: the whole small stack was 1028 MiB PSS after ~2,000 requests.
    assert sum(_quantity(c["resources"]["requests"]["memory"]) for c in running) >= 1028 * 2**20


def test_the_kserve_example_parses_and_has_the_expected_layout() -> None:
    """KServe's CRD schema is not bundled with kubernetes-validate: only the shape is checked."""
    (service,) = list(yaml.safe_load_all((KUBERNETES / "kserve" / "inferenceservice.yaml").read_text()))
    assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "pytorch"
    assert model["protocolVersion"] in ("v1", "v2")
    assert model["storageUri"].startswith("pvc://food-rotation-shared/")
    properties = read_properties(KUBERNETES / "kserve" / "config.properties")
    assert properties["model_store"] == "/mnt/models/model-store"
    envelope = {"v1": "kserve", "v2": "kservev2"}[model["protocolVersion"]]
    assert properties["service_envelope"] == envelope
    snapshot = json.loads(properties["model_snapshot"])
    assert snapshot["models"]["food_rotation"]["1.0"]["marName"] == "food_rotation.mar"


def test_the_kserve_example_in_the_docs_agrees_with_the_file() -> None:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "InferenceService" in b]
    documented = yaml.safe_load(block)
    (service,) = list(yaml.safe_load_all((KUBERNETES / "kserve" / "inferenceservice.yaml").read_text()))
    assert documented["spec"]["predictor"]["model"] == {key: value for key, value in
                                                         service["spec"]["predictor"]["model"].items()
                                                         if key != "resources"}
    assert "(kubernetes.md)" in (ROOT / "docs" / "deploying.md").read_text()
