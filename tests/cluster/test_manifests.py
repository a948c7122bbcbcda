"""Every manifest under cluster/ validates strictly against the KubeRay v1.7 CRDs; broken ones fail."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from tests.cluster.kube import MANIFESTS, REPO, validator
from tests.cluster.kube import doc as _doc


def test_manifest_set_is_complete():
    kinds = {(d["apiVersion"], d["kind"]) for d in (yaml.safe_load(p.read_text()) for p in MANIFESTS)}
    assert kinds == {
        ("ray.io/v1", "RayCluster"),
        ("ray.io/v1", "RayJob"),
        ("ray.io/v1", "RayCronJob"),
        ("batch/v1", "CronJob"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("v1", "ServiceAccount"),
    }


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_strictly(path, schemas):
    assert validator.validate_file(path, schemas) == []


@pytest.mark.parametrize(
    "name, mutate, expected",
    [
        (
            "raycluster.yaml",
            lambda d: d["spec"].__setitem__("workerGroupSpec", []),
            "'workerGroupSpec' was unexpected",
        ),
        (
            "raycluster.yaml",
            lambda d: d["spec"]["workerGroupSpecs"][0].__setitem__("maxReplica", 3),
            "'maxReplica' was unexpected",
        ),
        (
            "raycluster.yaml",
            lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].__setitem__(
                "imagePullPolicyy", "Always"
            ),
            "'imagePullPolicyy' was unexpected",
        ),
        (
            "raycluster.yaml",
            lambda d: d["spec"]["workerGroupSpecs"][0].pop("groupName"),
            "'groupName' is a required property",
        ),
        (
            "raycluster.yaml",
            lambda d: d["spec"]["workerGroupSpecs"][0].__setitem__("maxReplicas", "eight"),
            "is not of type 'integer'",
        ),
        (
            "raycluster.yaml",
            lambda d: d["spec"]["authOptions"].__setitem__("mode", "password"),
            "is not one of",
        ),
        (
            "rayjob-train.yaml",
            lambda d: d["spec"].__setitem__("shutdownAfterJobFinishes", "yes"),
            "is not of type 'boolean'",
        ),
        ("rayjob-annotate.yaml", lambda d: d["metadata"].__setitem__("nam", "x"), "'nam' was unexpected"),
        ("raycronjob-nightly.yaml", lambda d: d["spec"].pop("schedule"), "'schedule' is a required property"),
        (
            "raycronjob-nightly.yaml",
            lambda d: d["spec"]["jobTemplate"].__setitem__("entrypointCmd", "x"),
            "'entrypointCmd' was unexpected",
        ),
        (
            "cronjob-nightly.yaml",
            lambda d: d["spec"].__setitem__("concurrency", "Forbid"),
            "'concurrency' was unexpected",
        ),
        (
            "cronjob-nightly.yaml",
            lambda d: d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0].__setitem__(
                "args", "not-a-list"
            ),
            "is not of type 'array'",
        ),
        (
            "raycluster.yaml",
            lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"].append(
                {"name": "AWS_SECRET_ACCESS_KEY", "value": "planted-secret"}
            ),
            "inline value",
        ),
    ],
)
def test_broken_manifest_fails(name, mutate, expected, schemas):
    doc = copy.deepcopy(_doc(name))
    mutate(doc)
    problems = validator.validate(doc, schemas)
    assert any(expected in p for p in problems), problems


def test_unknown_kind_is_refused(schemas):
    assert validator.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}, schemas)


def test_invalid_yaml_is_one_line(tmp_path, schemas):
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec:\n  a: [\n")
    problems = validator.validate_file(bad, schemas)
    assert len(problems) == 1 and "invalid YAML" in problems[0]


def test_credentials_only_from_secrets():
    for path in MANIFESTS:
        text = path.read_text()
        for env_name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RAY_AUTH_TOKEN", "HF_TOKEN"):
            for block in re.findall(rf"name: {env_name}\n\s+(\w+):", text):
                assert block == "valueFrom", f"{path.name}: {env_name} must come from a Secret"


def test_entrypoints_name_shipped_configs_and_jobs():
    for path in MANIFESTS:
        text = path.read_text()
        for script in re.findall(r"/app/(jobs/\w+\.py)", text):
            assert (REPO / script).exists(), f"{path.name} runs {script}, which is not in the repo"
        for config in re.findall(r"/app/(jobs/configs/[\w.-]+\.yaml)", text):
            assert (REPO / config).exists(), f"{path.name} names {config}, which is not in the repo"


def test_cli_reports_problems(tmp_path, schemas, capsys):
    doc = _doc("rayjob-annotate.yaml")
    doc["spec"]["entrypointNumCpu"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    assert validator.main([str(bad), "--schemas", str(schemas)]) == 1
    assert "entrypointNumCpu" in capsys.readouterr().out
    assert validator.main([str(p) for p in MANIFESTS] + ["--schemas", str(schemas)]) == 0
