#!/usr/bin/env python3
"""Validate llava-vsd's Kubernetes manifests offline and strictly, like `kubectl apply --validate=strict`.

    python cluster/validate.py [--schemas ../shared/schemas/kuberay] cluster/*.yaml

KubeRay kinds are checked against the CRDs' openAPIV3Schema with every object closed
(`additionalProperties: false` wherever the CRD lists properties and does not preserve unknown
fields), so a misspelt or misplaced field is an error instead of being silently pruned by the API
server. A batch/v1 CronJob is checked with a small closed schema for its own fields and the CRD's
PodTemplateSpec (the same Kubernetes type) for its pod.
"""

from __future__ import annotations

import argparse
import copy
import sys
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

DEFAULT_SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "schemas" / "kuberay"
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


@lru_cache(maxsize=None)
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


def cronjob_schema(schemas_dir: str) -> dict:
    cluster = crd_schema(schemas_dir, "ray.io/v1", "RayCluster")
    pod_template = cluster["properties"]["spec"]["properties"]["headGroupSpec"]["properties"]["template"]
    job_spec = {
        "type": "object",
        "additionalProperties": False,
        "required": ["template"],
        "properties": {
            "backoffLimit": {"type": "integer", "minimum": 0},
            "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
            "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
            "parallelism": {"type": "integer", "minimum": 0},
            "completions": {"type": "integer", "minimum": 0},
            "template": pod_template,
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "batch/v1"},
            "kind": {"const": "CronJob"},
            "metadata": OBJECT_META,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["schedule", "jobTemplate"],
                "properties": {
                    "schedule": {"type": "string", "pattern": r"^(\S+\s+){4}\S+$"},
                    "timeZone": {"type": "string"},
                    "concurrencyPolicy": {"enum": ["Allow", "Forbid", "Replace"]},
                    "startingDeadlineSeconds": {"type": "integer", "minimum": 0},
                    "successfulJobsHistoryLimit": {"type": "integer", "minimum": 0},
                    "failedJobsHistoryLimit": {"type": "integer", "minimum": 0},
                    "suspend": {"type": "boolean"},
                    "jobTemplate": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["spec"],
                        "properties": {"metadata": {"type": "object"}, "spec": job_spec},
                    },
                },
            },
        },
    }


def schema_for(doc: dict, schemas_dir: str) -> dict:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_FILES:
        return crd_schema(schemas_dir, *key)
    if key == ("batch/v1", "CronJob"):
        return cronjob_schema(schemas_dir)
    raise ValueError(f"no schema for apiVersion={key[0]!r} kind={key[1]!r}")


def inline_secrets(doc) -> list[str]:
    """Env vars that look like credentials must come from a Secret, never a literal value."""
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            name = str(node.get("name", ""))
            if "value" in node and any(w in name.upper() for w in ("SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY")):
                found.append(f"{path}: {name} has an inline value; use valueFrom.secretKeyRef")
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(doc, "")
    return found


def validate(doc: dict, schemas_dir: str | Path = DEFAULT_SCHEMAS) -> list[str]:
    """Every problem in one manifest, as 'path: message' lines (empty when valid)."""
    try:
        schema = schema_for(doc, str(schemas_dir))
    except ValueError as exc:
        return [str(exc)]
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]
    return errors + inline_secrets(doc)


def validate_file(path: str | Path, schemas_dir: str | Path = DEFAULT_SCHEMAS) -> list[str]:
    problems = []
    try:
        docs = list(yaml.safe_load_all(Path(path).read_text()))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        return [f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})"]
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        problems += [f"{path}[{i}] {p}" for p in validate(doc, schemas_dir)]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--schemas", default=str(DEFAULT_SCHEMAS))
    args = parser.parse_args(argv)
    problems = [p for f in args.files for p in validate_file(f, args.schemas)]
    for p in problems:
        print(p)
    print(f"{len(args.files)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
