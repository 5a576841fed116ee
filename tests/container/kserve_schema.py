"""JSON schemas for the two KServe custom resources dnnzoo ships, written from KServe's CRD facts.

KServe's CRDs are not among the built-in schemas of `kubernetes-validate`, and its Python SDK pulls
a web stack in. These schemas hold the fields of `ServingRuntime` (serving.kserve.io/v1alpha1) and
`InferenceService` (serving.kserve.io/v1beta1) that a predictor uses, closed with
`additionalProperties: false` so a misspelt field fails; the embedded Kubernetes types (Container,
PodSpec fields, ObjectMeta) come from the Kubernetes schema of the given version, strict, so those
parts are checked as fully as a Deployment's.
"""

from __future__ import annotations

import importlib.resources
import json

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# KServe's protocol names (ServingRuntime.spec.protocolVersions, ModelSpec.protocolVersion).
PROTOCOLS = ["v1", "v2", "grpc-v1", "grpc-v2"]
SCALE_METRICS = ["cpu", "memory", "concurrency", "rps"]


def kubernetes_definitions(version: str) -> dict:
    """The strict `$defs` of Kubernetes `version` (e.g. "1.29.0") bundled with kubernetes-validate."""
    folder = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{version}-local-strict"
    return json.loads((folder / "_definitions.json").read_text(encoding="utf-8"))["$defs"]


def _ref(name: str) -> dict:
    return {"$ref": f"#/$defs/{name}"}


def _closed(properties: dict, required: list[str] = ()) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


def _resource(api_version: str, kind: str, spec: dict, defs: dict) -> dict:
    schema = _closed(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            "spec": spec,
            "status": {"type": "object"},
        },
        ["apiVersion", "kind", "metadata", "spec"],
    )
    return {"$schema": SCHEMA_DIALECT, "$defs": defs, **schema}


def _string_map() -> dict:
    return {"type": "object", "additionalProperties": {"type": "string"}}


def serving_runtime(version: str) -> dict:
    defs = kubernetes_definitions(version)
    pod = defs["io.k8s.api.core.v1.PodSpec"]["properties"]
    model_format = _closed(
        {"name": {"type": "string"}, "version": {"type": "string"}, "autoSelect": {"type": "boolean"}, "priority": {"type": "integer", "minimum": 1}},
        ["name"],
    )
    spec = _closed(
        {
            "supportedModelFormats": {"type": "array", "items": model_format},
            "protocolVersions": {"type": "array", "items": {"enum": PROTOCOLS}},
            "multiModel": {"type": "boolean"},
            "disabled": {"type": "boolean"},
            "grpcEndpoint": {"type": "string"},
            "grpcDataEndpoint": {"type": "string"},
            "httpDataEndpoint": {"type": "string"},
            "replicas": {"type": "integer", "minimum": 0},
            "annotations": _string_map(),
            "labels": _string_map(),
            "containers": {"type": "array", "minItems": 1, "items": _ref("io.k8s.api.core.v1.Container")},
            **{name: pod[name] for name in ("volumes", "nodeSelector", "affinity", "tolerations", "imagePullSecrets", "priorityClassName", "hostIPC")},
        },
        ["containers"],
    )
    return _resource("serving.kserve.io/v1alpha1", "ServingRuntime", spec, defs)


def inference_service(version: str) -> dict:
    defs = kubernetes_definitions(version)
    container = defs["io.k8s.api.core.v1.Container"]["properties"]
    pod = defs["io.k8s.api.core.v1.PodSpec"]["properties"]
    model = _closed(
        {
            **container,
            "modelFormat": _closed({"name": {"type": "string"}, "version": {"type": "string"}}, ["name"]),
            "runtime": {"type": "string"},
            "protocolVersion": {"enum": PROTOCOLS},
            "storageUri": {"type": "string", "pattern": r"^[a-z0-9+.-]+://"},
        },
        ["modelFormat"],
    )
    extension = {
        "minReplicas": {"type": "integer", "minimum": 0},
        "maxReplicas": {"type": "integer", "minimum": 0},
        "scaleMetric": {"enum": SCALE_METRICS},
        "scaleTarget": {"type": "integer", "minimum": 1},
        "containerConcurrency": {"type": "integer", "minimum": 0},
        "timeout": {"type": "integer", "minimum": 0},
        "canaryTrafficPercent": {"type": "integer", "minimum": 0, "maximum": 100},
        "labels": _string_map(),
        "annotations": _string_map(),
    }
    pod_fields = {name: value for name, value in pod.items() if name != "containers"}
    predictor = _closed({**pod_fields, **extension, "model": model, "containers": pod["containers"]})
    spec = _closed({"predictor": predictor}, ["predictor"])
    return _resource("serving.kserve.io/v1beta1", "InferenceService", spec, defs)


SCHEMAS = {"ServingRuntime": serving_runtime, "InferenceService": inference_service}
