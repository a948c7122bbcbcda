"""Closed JSON schemas for every kind the validator accepts.

KubeRay kinds come from the CRDs' openAPIV3Schema. Built-in kinds (CronJob, Job, Deployment-like
workloads, NetworkPolicy, ServiceAccount) and the Prometheus Operator's PodMonitor get small closed
schemas written here; their Kubernetes-typed parts (PodTemplateSpec, LabelSelector, the
NetworkPolicy ingress and egress rules) are taken from the RayCluster CRD, which embeds the same
types, so a misspelt field deep inside a pod is caught everywhere alike.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import yaml

CRD_FILES = {
    ("ray.io/v1", "RayCluster"): "ray.io_rayclusters.yaml",
    ("ray.io/v1", "RayJob"): "ray.io_rayjobs.yaml",
    ("ray.io/v1", "RayCronJob"): "ray.io_raycronjobs.yaml",
}

OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

# Pod-owning built-in kinds: (apiVersion, kind) -> their own spec fields besides `template`.
WORKLOADS = {
    ("apps/v1", "Deployment"): [
        "replicas",
        "selector",
        "strategy",
        "minReadySeconds",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
        "paused",
    ],
    ("apps/v1", "StatefulSet"): [
        "replicas",
        "selector",
        "serviceName",
        "podManagementPolicy",
        "updateStrategy",
        "revisionHistoryLimit",
        "minReadySeconds",
        "volumeClaimTemplates",
        "persistentVolumeClaimRetentionPolicy",
        "ordinals",
    ],
    ("apps/v1", "DaemonSet"): ["selector", "updateStrategy", "minReadySeconds", "revisionHistoryLimit"],
    ("apps/v1", "ReplicaSet"): ["replicas", "selector", "minReadySeconds"],
}


def close_objects(schema: dict) -> dict:
    """A copy of an OpenAPI schema where every object with listed properties rejects unknown keys."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@cache
def crd_schema(schemas_dir: str, api_version: str, kind: str) -> dict:
    group, version = api_version.split("/")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((Path(schemas_dir) / CRD_FILES[(api_version, kind)]).read_text(), Loader=loader)
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            schema = close_objects(v["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = OBJECT_META
            schema.setdefault("required", [])
            schema["required"] = sorted(set(schema["required"]) | {"apiVersion", "kind", "metadata", "spec"})
            schema["properties"].pop("status", None)  # status is written by the operator, never by us
            return schema
    raise KeyError(f"{kind}: version {version} not in the CRD")


def _cluster_spec(schemas_dir: str) -> dict:
    return crd_schema(schemas_dir, "ray.io/v1", "RayCluster")["properties"]["spec"]["properties"]


def pod_template(schemas_dir: str) -> dict:
    return _cluster_spec(schemas_dir)["headGroupSpec"]["properties"]["template"]


def label_selector(schemas_dir: str) -> dict:
    rule = _cluster_spec(schemas_dir)["networkPolicy"]["properties"]["head"]["properties"]["ingressRules"][
        "items"
    ]
    return rule["properties"]["from"]["items"]["properties"]["podSelector"]


def _network_rules(schemas_dir: str) -> tuple[dict, dict]:
    head = _cluster_spec(schemas_dir)["networkPolicy"]["properties"]["head"]["properties"]
    return head["ingressRules"], head["egressRules"]


def _closed(properties: dict, required: list[str] = ()) -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": properties,
    }


def _top(api_version: str, kind: str, spec: dict | None, extra: dict | None = None) -> dict:
    properties = {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": OBJECT_META}
    required = ["apiVersion", "kind", "metadata"]
    if spec is not None:
        properties["spec"] = spec
        required.append("spec")
    properties.update(extra or {})
    return _closed(properties, required)


def job_spec(schemas_dir: str) -> dict:
    return _closed(
        {
            "backoffLimit": {"type": "integer", "minimum": 0},
            "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
            "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
            "parallelism": {"type": "integer", "minimum": 0},
            "completions": {"type": "integer", "minimum": 0},
            "template": pod_template(schemas_dir),
        },
        ["template"],
    )


def cronjob_schema(schemas_dir: str) -> dict:
    return _top(
        "batch/v1",
        "CronJob",
        _closed(
            {
                "schedule": {"type": "string", "pattern": r"^(\S+\s+){4}\S+$"},
                "timeZone": {"type": "string"},
                "concurrencyPolicy": {"enum": ["Allow", "Forbid", "Replace"]},
                "startingDeadlineSeconds": {"type": "integer", "minimum": 0},
                "successfulJobsHistoryLimit": {"type": "integer", "minimum": 0},
                "failedJobsHistoryLimit": {"type": "integer", "minimum": 0},
                "suspend": {"type": "boolean"},
                "jobTemplate": _closed(
                    {"metadata": {"type": "object"}, "spec": job_spec(schemas_dir)}, ["spec"]
                ),
            },
            ["schedule", "jobTemplate"],
        ),
    )


def workload_schema(schemas_dir: str, api_version: str, kind: str) -> dict:
    """Deployment, StatefulSet, DaemonSet, ReplicaSet: their own fields loosely, the pod strictly."""
    own = {name: {} for name in WORKLOADS[(api_version, kind)]}
    own["selector"] = label_selector(schemas_dir)
    own["template"] = pod_template(schemas_dir)
    return _top(api_version, kind, _closed(own, ["selector", "template"]))


def network_policy_schema(schemas_dir: str) -> dict:
    ingress, egress = _network_rules(schemas_dir)
    return _top(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        _closed(
            {
                "podSelector": label_selector(schemas_dir),
                "policyTypes": {"type": "array", "items": {"enum": ["Ingress", "Egress"]}},
                "ingress": ingress,
                "egress": egress,
            },
            ["podSelector"],
        ),
    )


def service_account_schema() -> dict:
    return _top(
        "v1",
        "ServiceAccount",
        None,
        {
            "automountServiceAccountToken": {"type": "boolean"},
            "imagePullSecrets": {"type": "array", "items": _closed({"name": {"type": "string"}})},
        },
    )


def pod_monitor_schema(schemas_dir: str) -> dict:
    relabel = _closed(
        {
            "sourceLabels": {"type": "array", "items": {"type": "string"}},
            "targetLabel": {"type": "string"},
            "regex": {"type": "string"},
            "action": {"type": "string"},
            "replacement": {"type": "string"},
            "separator": {"type": "string"},
        }
    )
    endpoint = _closed(
        {
            "port": {"type": "string"},
            "path": {"type": "string"},
            "scheme": {"enum": ["http", "https"]},
            "interval": {"type": "string"},
            "scrapeTimeout": {"type": "string"},
            "relabelings": {"type": "array", "items": relabel},
            "metricRelabelings": {"type": "array", "items": relabel},
        },
        ["port"],
    )
    return _top(
        "monitoring.coreos.com/v1",
        "PodMonitor",
        _closed(
            {
                "selector": label_selector(schemas_dir),
                "namespaceSelector": _closed(
                    {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}
                ),
                "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": endpoint},
                "jobLabel": {"type": "string"},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
            },
            ["selector", "podMetricsEndpoints"],
        ),
    )


def schema_for(doc: dict, schemas_dir: str) -> dict:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_FILES:
        return crd_schema(schemas_dir, *key)
    if key == ("batch/v1", "CronJob"):
        return cronjob_schema(schemas_dir)
    if key == ("batch/v1", "Job"):
        return _top("batch/v1", "Job", job_spec(schemas_dir))
    if key in WORKLOADS:
        return workload_schema(schemas_dir, *key)
    if key == ("networking.k8s.io/v1", "NetworkPolicy"):
        return network_policy_schema(schemas_dir)
    if key == ("v1", "ServiceAccount"):
        return service_account_schema()
    if key == ("monitoring.coreos.com/v1", "PodMonitor"):
        return pod_monitor_schema(schemas_dir)
    raise ValueError(f"no schema for apiVersion={key[0]!r} kind={key[1]!r}")
