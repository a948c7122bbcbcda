"""Issue 15, cluster: each security rule of cluster/validate.py fails when the shipped manifests are
broken against it (one test per rule, each with the ways it can be broken), and passes as shipped."""

from __future__ import annotations

import copy
import json

import pytest

from tests.cluster.kube import REPO, deployable_set, doc, validator

DIGEST = "sha256:" + "0123456789abcdef" * 4


def head(d: dict) -> dict:
    spec = d["spec"].get("rayClusterSpec", d["spec"])
    return spec["headGroupSpec"]["template"]["spec"]


def worker(d: dict) -> dict:
    spec = d["spec"].get("rayClusterSpec", d["spec"])
    return spec["workerGroupSpecs"][0]["template"]["spec"]


def cron_pod(d: dict) -> dict:
    return d["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def env(container: dict, name: str) -> dict:
    return next(e for e in container["env"] if e["name"] == name)


def broken(name: str, mutate, schemas, release: bool = False) -> list[str]:
    d = copy.deepcopy(doc(name))
    mutate(d)
    return validator.validate(d, schemas, release)


def broken_set(name: str, mutate, schemas) -> list[str]:
    """Problems of the whole deployable set after mutating one of its documents (None drops it)."""
    docs = deployable_set()
    if mutate is None:
        docs.pop(name)
    else:
        mutate(docs[name])
    return validator.validate_set(list(docs.items()), schemas)


def test_shipped_set_passes_every_rule(schemas):
    assert validator.validate_set(list(deployable_set().items()), schemas) == []
    assert validator.main(["--schemas", str(schemas)]) == 0  # + bucket policy and Dockerfile


# --- securityContext on every pod --------------------------------------------------------------


@pytest.mark.parametrize(
    "name, mutate, expected",
    [
        (
            "raycluster.yaml",
            lambda d: head(d)["securityContext"].pop("runAsNonRoot"),
            "runAsNonRoot must be true",
        ),
        (
            "raycluster.yaml",
            lambda d: worker(d)["securityContext"].__setitem__("runAsUser", 0),
            "runAsUser 0 is root",
        ),
        (
            "rayjob-train.yaml",
            lambda d: worker(d)["containers"][0]["securityContext"].__setitem__(
                "allowPrivilegeEscalation", True
            ),
            "allowPrivilegeEscalation must be false",
        ),
        (
            "raycluster.yaml",
            lambda d: worker(d)["containers"][0]["securityContext"]["capabilities"].__setitem__(
                "drop", ["NET_RAW"]
            ),
            "capabilities must drop ALL",
        ),
        (
            "raycluster.yaml",
            lambda d: head(d)["containers"][0]["securityContext"]["capabilities"].__setitem__(
                "add", ["SYS_ADMIN"]
            ),
            "capabilities.add",
        ),
        (
            "cronjob-nightly.yaml",
            lambda d: cron_pod(d)["securityContext"].__setitem__("seccompProfile", {"type": "Unconfined"}),
            "seccompProfile must be RuntimeDefault",
        ),
        (
            "rayjob-train.yaml",
            lambda d: d["spec"]["submitterPodTemplate"]["spec"]["containers"][0][
                "securityContext"
            ].__setitem__("privileged", True),
            "privileged",
        ),
        (
            "raycluster.yaml",
            lambda d: d["spec"]["autoscalerOptions"].pop("securityContext"),
            "spec.autoscalerOptions: securityContext.allowPrivilegeEscalation must be false",
        ),
        ("raycluster.yaml", lambda d: worker(d).__setitem__("hostNetwork", True), "hostNetwork: true"),
        (
            "raycluster.yaml",
            lambda d: head(d).__setitem__("shareProcessNamespace", True),
            "shareProcessNamespace",
        ),
        (
            "raycluster.yaml",
            lambda d: head(d)["securityContext"].__setitem__("appArmorProfile", {"type": "Unconfined"}),
            "appArmorProfile Unconfined",
        ),
        (
            "raycluster.yaml",
            lambda d: worker(d)["volumes"].append({"name": "node", "hostPath": {"path": "/"}}),
            "hostPath",
        ),
        (
            "rayjob-annotate.yaml",
            lambda d: d["spec"].pop("submitterPodTemplate"),
            "submitterPodTemplate: missing",
        ),
    ],
)
def test_security_context_rule(name, mutate, expected, schemas):
    problems = broken(name, mutate, schemas)
    assert any(expected in p for p in problems), problems


# --- read-only root filesystem, Ray writing only to emptyDirs ----------------------------------


def _tmp_from_config_map(d):
    worker(d)["volumes"] = [
        v if v["name"] != "tmp" else {"name": "tmp", "configMap": {"name": "x"}} for v in worker(d)["volumes"]
    ]


@pytest.mark.parametrize(
    "name, mutate, expected",
    [
        (
            "raycluster.yaml",
            lambda d: head(d)["containers"][0]["securityContext"].pop("readOnlyRootFilesystem"),
            "readOnlyRootFilesystem must be true",
        ),
        (
            "raycluster.yaml",
            lambda d: worker(d)["containers"][0]["volumeMounts"].pop(1),
            "needs a writable /tmp",
        ),
        ("raycluster.yaml", _tmp_from_config_map, "needs a writable /tmp"),
        (
            "cronjob-nightly.yaml",
            lambda d: cron_pod(d)["containers"][0]["volumeMounts"][1].__setitem__("readOnly", True),
            "needs a writable /tmp",
        ),
    ],
)
def test_read_only_root_rule(name, mutate, expected, schemas):
    problems = broken(name, mutate, schemas)
    assert any(expected in p for p in problems), problems


# --- no service-account token where it is not needed ------------------------------------------


def _api_token_into_ray_head(d):
    head(d)["containers"][0]["volumeMounts"].append(
        {
            "name": "kube-api-token",
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "readOnly": True,
        }
    )


@pytest.mark.parametrize(
    "name, mutate, expected",
    [
        (
            "raycluster.yaml",
            lambda d: worker(d).__setitem__("automountServiceAccountToken", True),
            "automountServiceAccountToken must be false",
        ),
        (
            "rayjob-train.yaml",
            lambda d: head(d).pop("automountServiceAccountToken"),
            "automountServiceAccountToken must be false",
        ),
        (
            "raycluster.yaml",
            _api_token_into_ray_head,
            "spec.headGroupSpec.template.spec.containers[0]: mounts a Kubernetes API service-account token",
        ),
        (
            "raycluster.yaml",
            lambda d: d["spec"]["autoscalerOptions"]["volumeMounts"].pop(1),
            "the autoscaler needs a Kubernetes API token",
        ),
        (
            "serviceaccount-annotator.yaml",
            lambda d: d.__setitem__("automountServiceAccountToken", True),
            "automountServiceAccountToken must be false",
        ),
    ],
)
def test_service_account_token_rule(name, mutate, expected, schemas):
    problems = broken(name, mutate, schemas)
    assert any(expected in p for p in problems), problems


def test_service_accounts_must_be_in_the_set(schemas):
    """Their automount setting is part of the rule, so a pod may not name an account we do not ship."""
    problems = broken_set(
        "rayjob-train.yaml", lambda d: worker(d).__setitem__("serviceAccountName", "default"), schemas
    )
    assert any("service account 'default' is not defined" in p for p in problems), problems
    assert any(
        "service account 'llava-vsd-trainer' is not defined" in p
        for p in broken_set("serviceaccount-trainer.yaml", None, schemas)
    )


# --- credentials as mounted files or IRSA, never env keys ---------------------------------------


def _static_keys(d):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        worker(d)["containers"][0]["env"].append(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": "llava-vsd-s3", "key": key}}}
        )


def _credentials_file(d, mount_secret: bool = True):
    """The documented alternative to IRSA: an AWS shared-credentials file from a Secret."""
    c = head(d)["containers"][0]
    c["env"] = [e for e in c["env"] if e["name"] not in ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")]
    c["env"].append(
        {"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "/var/run/secrets/llava-vsd/aws/credentials"}
    )
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "aws-iam-token"]
    c["volumeMounts"].append(
        {"name": "aws-credentials", "mountPath": "/var/run/secrets/llava-vsd/aws", "readOnly": True}
    )
    head(d)["volumes"] = [v for v in head(d)["volumes"] if v["name"] != "aws-iam-token"]
    source = (
        {"secret": {"secretName": "llava-vsd-s3-annotator", "defaultMode": 0o440}}
        if mount_secret
        else {"emptyDir": {}}
    )
    head(d)["volumes"].append({"name": "aws-credentials", **source})


@pytest.mark.parametrize(
    "name, mutate, expected",
    [
        ("raycluster.yaml", _static_keys, "static AWS keys as environment variables"),
        (
            "rayjob-train.yaml",
            lambda d: worker(d)["containers"][0].__setitem__(
                "envFrom", [{"secretRef": {"name": "llava-vsd-s3"}}]
            ),
            "a whole Secret as environment variables",
        ),
        (
            "rayjob-train.yaml",
            lambda d: worker(d)["containers"][0]["env"].append(
                {
                    "name": "HF_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": "llava-vsd-hf", "key": "HF_TOKEN"}},
                }
            ),
            "HF_TOKEN: a Secret as an environment variable; mount it",
        ),
        (
            "raycluster.yaml",
            lambda d: env(head(d)["containers"][0], "AWS_WEB_IDENTITY_TOKEN_FILE").__setitem__(
                "value", "/tmp/token"
            ),
            "AWS_WEB_IDENTITY_TOKEN_FILE must point into a read-only projected serviceAccountToken volume with audience sts.amazonaws.com",
        ),
        (
            "raycluster.yaml",
            lambda d: worker(d)["volumes"][-1]["projected"]["sources"][0]["serviceAccountToken"].pop(
                "audience"
            ),
            "audience sts.amazonaws.com",
        ),
        (
            "raycluster.yaml",
            lambda d: head(d)["containers"][0]["env"].remove(env(head(d)["containers"][0], "AWS_ROLE_ARN")),
            "without AWS_ROLE_ARN",
        ),
        (
            "raycluster.yaml",
            lambda d: _credentials_file(d, mount_secret=False),
            "AWS_SHARED_CREDENTIALS_FILE must point into a read-only Secret",
        ),
        (
            "cronjob-nightly.yaml",
            lambda d: cron_pod(d)["containers"][0]["env"].append(
                {
                    "name": "AWS_ROLE_ARN",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "llava-vsd-config", "key": "ANNOTATOR_ROLE_ARN"}
                    },
                }
            ),
            "needs no S3 credentials",
        ),
        (
            "cronjob-nightly.yaml",
            lambda d: env(cron_pod(d)["containers"][0], "RAY_AUTH_TOKEN_PATH").__setitem__(
                "value", "/etc/token"
            ),
            "RAY_AUTH_TOKEN_PATH has an inline value",
        ),
    ],
)
def test_credentials_rule(name, mutate, expected, schemas):
    problems = broken(name, mutate, schemas)
    assert any(expected in p for p in problems), problems


def test_credentials_file_is_the_accepted_alternative(schemas):
    assert broken("raycluster.yaml", _credentials_file, schemas) == []


# --- NetworkPolicy for the Ray heads (and workers) ----------------------------------------------


def _rule(d, i):
    return d["spec"]["ingress"][i]


@pytest.mark.parametrize(
    "name, mutate, expected",
    [
        (
            "networkpolicy-raycluster.yaml",
            None,
            "RayCluster llava-vsd spec.headGroupSpec.template: no NetworkPolicy selects these pods",
        ),
        (
            "networkpolicy-train.yaml",
            None,
            "llava-vsd-train-13b's cluster spec.rayClusterSpec.headGroupSpec.template: no NetworkPolicy",
        ),
        (
            "networkpolicy-raycluster.yaml",
            lambda d: d["spec"].__setitem__("policyTypes", ["Egress"]),
            "no NetworkPolicy selects",
        ),
        ("networkpolicy-raycluster.yaml", lambda d: _rule(d, 0).pop("from"), "from every source"),
        (
            "networkpolicy-raycluster.yaml",
            lambda d: _rule(d, 0)["from"][0]["podSelector"].__setitem__(
                "matchLabels", {"app.kubernetes.io/name": "llava-vsd"}
            ),
            "from pods outside",
        ),
        (
            "networkpolicy-raycluster.yaml",
            lambda d: _rule(d, 1).pop("ports"),
            "every port (GCS 6379, client 10001",
        ),
        (
            "networkpolicy-raycluster.yaml",
            lambda d: _rule(d, 1)["ports"].append({"protocol": "TCP", "port": 6379}),
            "from pods outside",
        ),
        (
            "networkpolicy-train.yaml",
            lambda d: _rule(d, 0)["from"].append({"ipBlock": {"cidr": "0.0.0.0/0"}}),
            "IP block",
        ),
        (
            "rayjob-train.yaml",
            lambda d: d["spec"]["submitterPodTemplate"]["metadata"]["labels"].__setitem__(
                "app.kubernetes.io/instance", "llava-vsd-train-13b"
            ),
            "from pods outside",
        ),
    ],
)
def test_network_policy_rule(name, mutate, expected, schemas):
    problems = broken_set(name, mutate, schemas)
    assert any(expected in p for p in problems), problems


# --- metrics (and the dashboard) scraped / reached only from inside the cluster ----------------


@pytest.mark.parametrize(
    "name, mutate, expected",
    [
        (
            "raycluster.yaml",
            lambda d: d["spec"]["headGroupSpec"].__setitem__("serviceType", "NodePort"),
            "NodePort exposes",
        ),
        (
            "raycluster.yaml",
            lambda d: d["spec"]["headGroupSpec"].__setitem__("serviceType", "LoadBalancer"),
            "LoadBalancer exposes",
        ),
        (
            "rayjob-train.yaml",
            lambda d: d["spec"]["rayClusterSpec"]["headGroupSpec"].__setitem__("enableIngress", True),
            "Ingress exposes",
        ),
        (
            "raycluster.yaml",
            lambda d: worker(d)["containers"][0]["ports"][0].__setitem__("hostPort", 8080),
            "hostPort 8080 publishes metrics",
        ),
        (
            "networkpolicy-raycluster.yaml",
            lambda d: _rule(d, 2)["from"][0].__setitem__("namespaceSelector", {}),
            "from every namespace",
        ),
        (
            "networkpolicy-train.yaml",
            lambda d: _rule(d, 2)["from"][0].pop("podSelector"),
            "from every pod of the selected namespaces",
        ),
        (
            "podmonitor.yaml",
            lambda d: d["spec"].__setitem__("namespaceSelector", {"any": True}),
            "scrapes every namespace",
        ),
        (
            "podmonitor.yaml",
            lambda d: d["spec"]["podMetricsEndpoints"][0].__setitem__("port", "dashboard"),
            "is not the metrics port",
        ),
        (
            "podmonitor.yaml",
            lambda d: d["spec"]["selector"]["matchLabels"].__setitem__("app.kubernetes.io/name", "other"),
            "matches none",
        ),
    ],
)
def test_metrics_in_cluster_rule(name, mutate, expected, schemas):
    problems = broken_set(name, mutate, schemas)
    assert any(expected in p for p in problems), problems


# --- S3 bucket policy limited to each role's prefixes, and the jobs within them ---------------


def _policy() -> dict:
    return json.loads((REPO / "infra" / "s3" / "bucket-policy.json").read_text())


def _statement(policy: dict, sid: str) -> dict:
    return next(s for s in policy["Statement"] if s["Sid"] == sid)


def _without(sid):
    return lambda p: p["Statement"].remove(_statement(p, sid))


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda p: _statement(p, "TrainerWritesRuns").__setitem__(
                "Resource", ["arn:aws:s3:::llava-vsd/*"]
            ),
            "llava-vsd-trainer may s3:PutObject arn:aws:s3:::llava-vsd/*, outside its prefixes runs/",
        ),
        (
            lambda p: _statement(p, "AnnotatorReadsCorpusModelsAndItsOutput")["Resource"].append(
                "arn:aws:s3:::llava-vsd/runs/*"
            ),
            "llava-vsd-annotator may s3:GetObject arn:aws:s3:::llava-vsd/runs/*, outside its prefixes",
        ),
        (
            lambda p: _statement(p, "ConsumersReadAnnotationsOnly").__setitem__(
                "Action", ["s3:GetObject", "s3:PutObject"]
            ),
            "ml-data-consumers may s3:PutObject",
        ),
        (
            lambda p: _statement(p, "TrainerWritesRuns")["Resource"].append("arn:aws:s3:::llava-vsd/runs"),
            "may s3:PutObject arn:aws:s3:::llava-vsd/runs, outside",
        ),  # a bare prefix key is for reads (stat) only
        (
            lambda p: _statement(p, "AnnotatorReadsCorpusModelsAndItsOutput")["Resource"].append(
                "arn:aws:s3:::llava-vsd/corpusX*"
            ),
            "arn:aws:s3:::llava-vsd/corpusX*, outside",
        ),
        (lambda p: _statement(p, "TrainerWritesRuns").__setitem__("Action", "s3:*"), "is allowed 's3:*'"),
        (
            lambda p: _statement(p, "ConsumersReadAnnotationsOnly").__setitem__("Principal", "*"),
            "allows every principal",
        ),
        (
            lambda p: _statement(p, "ConsumersListAnnotations")["Condition"]["StringLike"].__setitem__(
                "s3:prefix", ["*"]
            ),
            "ml-data-consumers may list *",
        ),
        (_without("AnnotatorWritesNothingElse"), "no Deny fences llava-vsd-annotator's writes"),
        (_without("TrainerReadsNothingElse"), "no Deny fences llava-vsd-trainer's reads"),
        (
            lambda p: _statement(p, "TrainerWritesNothingElse")["NotResource"].append(
                "arn:aws:s3:::llava-vsd/annotations/*"
            ),
            "no Deny fences llava-vsd-trainer's writes",
        ),
        (_without("DenyInsecureTransport"), "aws:SecureTransport"),
    ],
)
def test_bucket_policy_rule(mutate, expected):
    policy = _policy()
    assert validator.s3access.check_bucket_policy(policy) == []
    mutate(policy)
    problems = validator.s3access.check_bucket_policy(policy)
    assert any(expected in p for p in problems), problems


def _replace_in_entrypoint(old, new):
    return lambda d: d["spec"].__setitem__("entrypoint", d["spec"]["entrypoint"].replace(old, new))


@pytest.mark.parametrize(
    "name, mutate, expected",
    [
        (
            "rayjob-annotate.yaml",
            _replace_in_entrypoint("--output s3://llava-vsd/annotations/", "--output s3://llava-vsd/runs/x/"),
            "writes s3://llava-vsd/runs/x/, outside what llava-vsd-annotator may write",
        ),
        (
            "rayjob-train.yaml",
            _replace_in_entrypoint(
                "data.uri=s3://llava-vsd/instructions/vsd/", "data.uri=s3://llava-vsd/corpus/"
            ),
            "reads s3://llava-vsd/corpus/, outside what llava-vsd-trainer may read",
        ),
        (
            "cronjob-nightly.yaml",
            lambda d: cron_pod(d)["containers"][0]["args"].__setitem__(
                5, "--input=s3://other-bucket/corpus/"
            ),
            "reads s3://other-bucket/corpus/",
        ),
    ],
)
def test_jobs_stay_inside_their_role(name, mutate, expected, schemas):
    problems = broken_set(name, mutate, schemas)
    assert any(expected in p for p in problems), problems


# --- images by digest -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, mutate, release, expected",
    [
        (
            "raycluster.yaml",
            lambda d: head(d)["containers"][0].__setitem__("image", "ghcr.io/llava-vsd/llava-vsd:0.1.0-gpu"),
            False,
            "'ghcr.io/llava-vsd/llava-vsd:0.1.0-gpu' is not pinned by digest",
        ),
        (
            "cronjob-nightly.yaml",
            lambda d: cron_pod(d)["containers"][0].__setitem__(
                "image", "rayproject/ray@${LLAVA_VSD_IMAGE_DIGEST}"
            ),
            False,
            "is not pinned by digest",
        ),
        (
            "raycluster.yaml",
            lambda d: d["spec"]["autoscalerOptions"].__setitem__("image", "rayproject/ray:2.60.0"),
            False,
            "spec.autoscalerOptions.image: image 'rayproject/ray:2.60.0' is not pinned",
        ),
        (
            "rayjob-train.yaml",
            lambda d: (
                worker(d)
                .setdefault("initContainers", [])
                .append(
                    {
                        "name": "warm",
                        "image": "busybox:latest",
                        "securityContext": worker(d)["containers"][0]["securityContext"],
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    }
                )
            ),
            False,
            "'busybox:latest' is not pinned",
        ),
        ("raycluster.yaml", lambda d: None, True, "placeholder ${LLAVA_VSD_IMAGE_DIGEST} not filled"),
    ],
)
def test_image_digest_rule(name, mutate, release, expected, schemas):
    problems = broken(name, mutate, schemas, release)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    "dockerfile, ok",
    [
        ("ARG RAY_BASE_DIGEST\nFROM rayproject/ray:2.60.0-py311-cu128@${RAY_BASE_DIGEST}\n", True),
        (f"FROM rayproject/ray:2.60.0-py311-cu128@{DIGEST}\nFROM scratch\n", True),
        ("FROM rayproject/ray:2.60.0-py311-cu128\n", False),
        ("ARG RAY_BASE_DIGEST=latest\nFROM rayproject/ray@${RAY_BASE_DIGEST}\n", False),
        ("FROM rayproject/ray@${UNDECLARED}\n", False),
        (
            f"FROM --platform=linux/amd64 python:3.11@{DIGEST} AS build\nFROM build\nFROM python:3.11 AS final\n",
            False,
        ),
    ],
)
def test_dockerfile_base_pinned(dockerfile, ok):
    problems = validator.images.check_dockerfile(dockerfile)
    assert (problems == []) is ok, problems
    if not ok:
        assert "not pinned by digest" in problems[0]
    assert validator.images.check_dockerfile((REPO / "infra" / "Dockerfile").read_text()) == []


# --- the plain CronJob and Deployment-like objects get the same pod rules ----------------------


def _deployment(pod_spec: dict, kind: str = "Deployment") -> dict:
    labels = {"app.kubernetes.io/name": "llava-vsd", "app.kubernetes.io/component": "tool"}
    spec = {
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    api = "batch/v1" if kind == "Job" else "apps/v1"
    if kind == "Job":
        spec.pop("selector")
    return {"apiVersion": api, "kind": kind, "metadata": {"name": "tool"}, "spec": spec}


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "Job"])
def test_deployment_like_objects_get_the_pod_rules(kind, schemas):
    secure = copy.deepcopy(cron_pod(doc("cronjob-nightly.yaml")))
    secure["containers"][0]["image"] = f"ghcr.io/llava-vsd/llava-vsd@{DIGEST}"
    if kind != "Job":
        secure.pop("restartPolicy")
    assert validator.validate(_deployment(secure, kind), schemas) == []
    insecure = {"containers": [{"name": "tool", "image": "busybox:1.36"}]}
    problems = validator.validate(_deployment(insecure, kind), schemas)
    for expected in (
        "runAsNonRoot",
        "allowPrivilegeEscalation",
        "capabilities must drop ALL",
        "seccompProfile",
        "readOnlyRootFilesystem",
        "automountServiceAccountToken",
        "not pinned by digest",
    ):
        assert any(expected in p for p in problems), (expected, problems)
    typo = _deployment(secure, kind)
    typo["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    assert any("'securityContex' was unexpected" in p for p in validator.validate(typo, schemas))
