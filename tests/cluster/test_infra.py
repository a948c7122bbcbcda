"""infra/ files parse, agree with the package (Ray version) and carry no credentials."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"


def test_image_matches_pinned_ray_and_cluster_manifests():
    pinned = re.search(r'"ray\[[^\]]+\]==([\d.]+)\.\*"', (REPO / "pyproject.toml").read_text()).group(1)
    base = re.search(r"^FROM rayproject/ray:([\d.]+)-", (INFRA / "Dockerfile").read_text(), re.M).group(1)
    assert base.startswith(pinned)
    for manifest in (REPO / "cluster").glob("*.yaml"):
        for version in re.findall(r'rayVersion: "([\d.]+)"', manifest.read_text()):
            assert version.startswith(pinned), manifest.name


def test_s3_policies_parse_and_enforce_tls():
    lifecycle = json.loads((INFRA / "s3" / "lifecycle.json").read_text())
    assert {r["ID"] for r in lifecycle["Rules"]} >= {"expire-aborted-multipart-uploads"}
    policy = json.loads((INFRA / "s3" / "bucket-policy.json").read_text())
    tls = [s for s in policy["Statement"] if s["Sid"] == "DenyInsecureTransport"]
    assert tls and tls[0]["Effect"] == "Deny"


def test_prometheus_scrapes_ray_metrics_port():
    scrape = yaml.safe_load((INFRA / "monitoring" / "prometheus-scrape.yaml").read_text())
    job = scrape["scrape_configs"][0]
    assert job["job_name"] == "ray"
    assert any(r.get("regex") == "8080" for r in job["relabel_configs"])
    cluster = yaml.safe_load((REPO / "cluster" / "raycluster.yaml").read_text())
    groups = [cluster["spec"]["headGroupSpec"]] + cluster["spec"]["workerGroupSpecs"]
    for group in groups:
        assert group["rayStartParams"]["metrics-export-port"] == "8080"
        ports = group["template"]["spec"]["containers"][0]["ports"]
        assert {"containerPort": 8080, "name": "metrics"} in ports


def test_no_credentials_in_infra():
    for path in INFRA.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"AKIA[0-9A-Z]{16}", text), path
            assert not re.search(r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{20,}", text), path


def test_irsa_roles_service_accounts_and_config_agree():
    """One IAM role per service account, trusted by that account only; the ConfigMap keys the pods
    read are the ones setup.sh writes."""
    from tests.cluster.kube import deployable_set, validator

    docs = deployable_set()
    accounts = sorted(d["metadata"]["name"] for d in docs.values() if d["kind"] == "ServiceAccount")
    assert accounts == sorted(validator.s3access.GUARDED)
    template = (INFRA / "s3" / "irsa-trust-policy.json").read_text()
    setup = (INFRA / "s3" / "setup.sh").read_text()
    for account in accounts:
        rendered = (
            template.replace("ACCOUNT_ID", "111122223333")
            .replace("OIDC_PROVIDER", "oidc.example/id/X")
            .replace("NAMESPACE", "ml")
            .replace("SERVICE_ACCOUNT", account)
        )
        condition = json.loads(rendered)["Statement"][0]["Condition"]["StringEquals"]
        assert condition == {
            "oidc.example/id/X:aud": "sts.amazonaws.com",
            "oidc.example/id/X:sub": f"system:serviceaccount:ml:{account}",
        }
        assert account in setup
    written = set(re.findall(r"--from-literal=(\w+)=", setup))
    read = set(
        re.findall(
            r"configMapKeyRef: \{name: llava-vsd-config, key: (\w+)",
            "".join(p.read_text() for p in (REPO / "cluster").glob("*.yaml")),
        )
    )
    assert read and read <= written, read - written
