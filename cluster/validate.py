#!/usr/bin/env python3
"""Validate llava-vsd's Kubernetes manifests offline and strictly, like `kubectl apply --validate=strict`.

    python cluster/validate.py [--schemas DIR] [--release] [files...]

Runs from any folder and any clone: the KubeRay CRDs it checks against are vendored next to it
(cluster/schemas/kuberay-v1.7/, see its README), and every default path is relative to this file.

With no files: cluster/*.yaml, infra/monitoring/podmonitor.yaml, infra/s3/bucket-policy.json and
infra/Dockerfile, checked together.

Schema: KubeRay kinds are checked against the CRDs' openAPIV3Schema with every object closed
(`additionalProperties: false` wherever the CRD lists properties and does not preserve unknown
fields), so a misspelt or misplaced field is an error instead of being silently pruned by the API
server. Built-in kinds (CronJob, Job, Deployment-like workloads, NetworkPolicy, ServiceAccount)
and PodMonitor get small closed schemas whose Kubernetes types come from the same CRD.

Security (cluster/kubecheck/, issue 15): every pod non-root with no privilege escalation, all
capabilities dropped, seccomp RuntimeDefault and a read-only root (emptyDir /tmp); no API token
but the autoscaler's; S3 credentials as IRSA or a mounted file, never env keys; a NetworkPolicy
for every Ray pod; metrics and the dashboard never exposed beyond the cluster; images by digest
(`--release` also refuses the digest placeholder); the bucket policy and each job within its
role's prefixes. Rules that need several documents run over all files given at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import cache
from pathlib import Path

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # kubecheck/ sits next to this script, which is not in a package
    sys.path.insert(0, str(HERE))

from kubecheck import images, rules, s3access  # noqa: E402
from kubecheck.credentials import inline_secrets  # noqa: E402,F401  (part of this module's API)
from kubecheck.schemas import CRD_FILES, OBJECT_META, close_objects, crd_schema, cronjob_schema, schema_for  # noqa: E402,F401

REPO = HERE.parent
DEFAULT_SCHEMAS = HERE / "schemas" / "kuberay-v1.7"  # vendored: a clone needs nothing outside itself
DEFAULT_FILES = sorted(str(p) for p in (REPO / "cluster").glob("*.yaml")) + [
    str(REPO / "infra" / "monitoring" / "podmonitor.yaml"),
    str(REPO / "infra" / "s3" / "bucket-policy.json"),
    str(REPO / "infra" / "Dockerfile"),
]


@cache
def _schema_validator(schemas_dir: str, api_version, kind) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(schema_for({"apiVersion": api_version, "kind": kind}, schemas_dir))


def schema_problems(doc: dict, schemas_dir: str | Path = DEFAULT_SCHEMAS) -> list[str]:
    try:
        validator = _schema_validator(str(schemas_dir), doc.get("apiVersion"), doc.get("kind"))
    except (ValueError, TypeError) as exc:
        return [str(exc) if isinstance(exc, ValueError) else f"no schema for apiVersion/kind {exc}"]
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def _check(doc: dict, schemas_dir, release: bool) -> tuple[bool, list[str]]:
    """(matches its schema, every problem). The security rules run once the document matches its
    schema: before that the paths they read may not exist."""
    errors = schema_problems(doc, schemas_dir)
    return not errors, (errors or rules.per_document(doc, release)) + inline_secrets(doc)


def validate(doc: dict, schemas_dir: str | Path = DEFAULT_SCHEMAS, release: bool = False) -> list[str]:
    """Every problem in one manifest, as 'path: message' lines (empty when valid)."""
    return _check(doc, schemas_dir, release)[1]


def _load(path: str | Path) -> tuple[list[dict], list[str]]:
    try:
        docs = list(yaml.safe_load_all(Path(path).read_text()))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        return [], [f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})"]
    return [d for d in docs if d is not None], []


def validate_file(
    path: str | Path, schemas_dir: str | Path = DEFAULT_SCHEMAS, release: bool = False
) -> list[str]:
    """The problems of each document of one YAML file on its own (no rules across documents)."""
    docs, problems = _load(path)
    for i, doc in enumerate(docs):
        problems += [f"{path}[{i}] {p}" for p in validate(doc, schemas_dir, release)]
    return problems


def validate_set(
    named: list[tuple[str, dict]], schemas_dir: str | Path = DEFAULT_SCHEMAS, release: bool = False
) -> list[str]:
    """Documents deployed together: each on its own, then the rules across them (over the documents
    that match their schema)."""
    problems, valid = [], []
    for where, doc in named:
        schema_ok, found = _check(doc, schemas_dir, release)
        problems += [f"{where} {p}" for p in found]
        if schema_ok:
            valid.append((where, doc))
    return problems + rules.per_set(valid)


def validate_paths(
    paths: list[str], schemas_dir: str | Path = DEFAULT_SCHEMAS, release: bool = False
) -> list[str]:
    """Manifests, a bucket policy (*.json) and Dockerfiles, each by its own rules; manifests together."""
    problems, named = [], []
    for path in paths:
        name = Path(path).name
        if name == "Dockerfile" or name.endswith(".Dockerfile"):
            problems += images.check_dockerfile(Path(path).read_text(), str(path))
        elif name.endswith(".json"):
            problems += s3access.check_bucket_policy(json.loads(Path(path).read_text()), str(path))
        else:
            docs, load_problems = _load(path)
            problems += load_problems
            named += [(f"{path}[{i}]", d) for i, d in enumerate(docs)]
    return problems + validate_set(named, schemas_dir, release)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="default: the deployable set (see above)")
    parser.add_argument("--schemas", default=str(DEFAULT_SCHEMAS))
    parser.add_argument(
        "--release",
        action="store_true",
        help="also refuse the image digest placeholder (for manifests rendered by infra/release.sh)",
    )
    args = parser.parse_args(argv)
    missing = [n for n in sorted(set(CRD_FILES.values())) if not (Path(args.schemas) / n).is_file()]
    if missing:
        print(f"validate.py: error: --schemas {args.schemas}: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    files = args.files or DEFAULT_FILES
    problems = validate_paths(files, args.schemas, args.release)
    for p in problems:
        print(p)
    print(f"{len(files)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
