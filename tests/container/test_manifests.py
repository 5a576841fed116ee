"""The deployment files: Kubernetes manifests against their schemas, KServe resources against schemas
written from their CRDs, and the facts that tie the Dockerfile, compose and the manifests together.

The container itself is exercised for real by tests/container/smoke.sh (.ci/run calls it); these
tests need no container engine. Kubernetes schemas come from `kubernetes-validate` (bundled, strict:
an unknown field fails), checked at the oldest version the manifests need (1.27: native gRPC probes
are GA) and the newest the package knows.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="needs kubernetes-validate (the dev extra)")
jsonschema = pytest.importorskip("jsonschema")

from tests.container import kserve_schema  # noqa: E402  (after the skips above)

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
KSERVE = ROOT / "deploy" / "kserve"
VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def kustomization() -> dict:
    return documents(KUBERNETES / "kustomization.yaml")[0]


def resources() -> list[dict]:
    return [doc for name in kustomization()["resources"] for doc in documents(KUBERNETES / name)]


def by_kind(kind: str) -> list[dict]:
    return [doc for doc in resources() if doc["kind"] == kind]


def kserve(kind: str) -> dict:
    found = [doc for path in sorted(KSERVE.glob("*.yaml")) for doc in documents(path) if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in {KSERVE}, found {len(found)}"
    return found[0]


def kserve_errors(doc: dict, version: str) -> list[str]:
    validator = jsonschema.Draft202012Validator(kserve_schema.SCHEMAS[doc["kind"]](version))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


# --- schemas ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_kubernetes_manifests_validate_strictly(version):
    docs = resources()
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "HorizontalPodAutoscaler", "PersistentVolumeClaim"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_kubernetes_validation_is_strict():
    deployment = copy.deepcopy(by_kind("Deployment")[0])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbes"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProbes"):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kind", ["ServingRuntime", "InferenceService"])
def test_kserve_resources_validate(kind, version):
    assert kserve_errors(kserve(kind), version) == []


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("InferenceService", ["spec", "predictor", "model", "protocolVersion"], "grpc-v3"),
        ("InferenceService", ["spec", "predictor", "model", "storageURI"], "pvc://x/"),
        ("InferenceService", ["spec", "predictor", "model", "resources", "limit"], {"cpu": "1"}),
        ("ServingRuntime", ["spec", "protocolVersion"], ["grpc-v2"]),
        ("ServingRuntime", ["spec", "containers"], [{"image": "dnnzoo:latest"}]),  # a container needs a name
    ],
)
def test_kserve_schemas_reject_mistakes(kind, path, value):
    doc = copy.deepcopy(kserve(kind))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert kserve_errors(doc, VERSIONS[0])


# --- what ties the files together ----------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_names_the_image():
    listed = set(kustomization()["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    images = {image["name"] for image in kustomization()["images"]}
    containers = [c for d in by_kind("Deployment") for c in d["spec"]["template"]["spec"]["containers"]]
    assert {c["image"] for c in containers} <= images


def test_deployment_probes_health_and_serves_the_claim():
    (deployment,) = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == 8001, probe
    assert {p["containerPort"] for p in container["ports"]} == {8000, 8001, 8002}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {d["metadata"]["name"] for d in by_kind("PersistentVolumeClaim")}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert container["args"][container["args"].index("--repository") + 1] in mounts
    grace = float(next(e["value"] for e in container["env"] if e["name"] == "DNNZOO_GRACE_SECONDS"))
    assert pod["terminationGracePeriodSeconds"] > grace


def test_services_and_autoscaler_select_the_deployment():
    (deployment,) = by_kind("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert by_kind("Service")
    for service in by_kind("Service"):
        assert service["spec"]["selector"].items() <= labels.items(), service["metadata"]["name"]
    main = next(s for s in by_kind("Service") if s["spec"].get("clusterIP") != "None")
    assert {p["port"] for p in main["spec"]["ports"]} == {8000, 8001, 8002}
    (hpa,) = by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    (pdb,) = by_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_inference_service_uses_the_runtime_over_grpc_v2():
    runtime, service = kserve("ServingRuntime"), kserve("InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] == "grpc-v2" and "grpc-v2" in runtime["spec"]["protocolVersions"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    (container,) = runtime["spec"]["containers"]
    assert [p["name"] for p in container["ports"]] == ["h2c"]  # KServe routes gRPC to the port named h2c
    assert container["args"][container["args"].index("--repository") + 1] == "/mnt/models"


# --- image and compose ---------------------------------------------------------------------------


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def stages() -> dict[str, str]:
    """Stage name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", dockerfile())
    found, name = {}, None
    for line in text.splitlines():
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line.strip(), re.IGNORECASE)
        if match:
            name = match.group(1)
            found[name] = ""
        elif name and line.strip() and not line.lstrip().startswith("#"):
            found[name] += line.strip() + "\n"
    return found


def test_serving_requirements_match_the_base_dependencies():
    listed = [line.split("#")[0].strip() for line in (ROOT / "deploy" / "requirements-serving.txt").read_text().splitlines()]
    listed = sorted(line.replace(" ", "") for line in listed if line)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    expected = sorted(dep.split(";")[0].replace(" ", "") for dep in project if not dep.startswith("onnxruntime"))
    assert listed == expected


def test_dockerfile_runtime_is_slim_non_root_and_checks_health():
    found = stages()
    assert list(found)[-1] == "runtime", "the default target (last stage) is the serving image"
    serving, builder = found["serving"], found["builder"]
    assert re.search(r"^USER\s+10001", serving, re.MULTILINE)
    assert re.search(r"^EXPOSE\s+8000\s+8001\s+8002", serving, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK.*dnnzoo health", serving, re.MULTILINE)
    assert "COPY training" not in builder and "COPY export" not in builder and "torch" not in builder
    assert "pip install" not in serving  # the runtime stage only copies the builder's venv


def test_every_pip_step_takes_the_optional_ca_secret():
    runs = [line for body in stages().values() for line in body.splitlines() if line.startswith("RUN") and "pip install" in line]
    assert runs
    for line in runs:
        assert "--mount=type=secret,id=pipca,required=false" in line and "PIP_CERT=/run/secrets/pipca" in line


def test_compose_builds_the_models_into_a_named_volume_and_serves_it():
    compose = documents(ROOT / "compose.yaml")[0]
    models, server = compose["services"]["models"], compose["services"]["server"]
    assert models["build"]["target"] == "models" and server["build"]["target"] == "runtime"
    assert server["depends_on"]["models"]["condition"] == "service_completed_successfully"
    volume = "models"
    assert volume in compose["volumes"]
    assert f"{volume}:/models" in models["volumes"] and f"{volume}:/models:ro" in server["volumes"]
    assert {p.rsplit(":", 1)[1] for p in server["ports"]} == {"8000", "8001", "8002"}
    assert set(stages()) >= {"models", "runtime"}
