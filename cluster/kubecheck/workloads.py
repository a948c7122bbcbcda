"""Find every pod a manifest will create, with the labels it will carry.

Pods hide at different depths per kind (a RayJob holds a whole RayCluster plus the submitter pod
KubeRay starts for it), and KubeRay adds labels of its own. The security rules and the
NetworkPolicy check need both, so they are worked out once here, mirroring KubeRay 1.7
(`labelPod`, `getSubmitterTemplate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Labels that name one Ray cluster's pods and nothing else: KubeRay's own, or ours where KubeRay's
# is unknown in advance (a RayJob's cluster gets a generated name).
IDENTITY_KEYS = ("ray.io/cluster", "app.kubernetes.io/instance")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}


@dataclass(eq=False)  # identity: two identical templates are still two pods
class Pod:
    where: str  # path of the pod template inside its document
    template: dict  # PodTemplateSpec: {metadata, spec}
    role: str  # ray-head | ray-worker | submitter | workload
    labels: dict  # labels the running pod will carry
    autoscaler: dict | None = None  # autoscalerOptions, on the head of an autoscaling cluster
    autoscaler_where: str = ""

    @property
    def spec(self) -> dict:
        return self.template.get("spec") or {}

    def containers(self, with_autoscaler: bool = True) -> list[tuple[str, dict]]:
        """(path, container) for every container, init and ephemeral ones included, and the
        autoscaler sidecar KubeRay adds to an autoscaling head (as its autoscalerOptions say)."""
        out = []
        for key in ("initContainers", "containers", "ephemeralContainers"):
            for i, c in enumerate(self.spec.get(key) or []):
                out.append((f"{self.where}.spec.{key}[{i}]", c))
        if with_autoscaler and self.autoscaler is not None:
            out.append((self.autoscaler_where, {"name": "autoscaler", **self.autoscaler}))
        return out

    def volumes(self) -> dict[str, dict]:
        return {v.get("name"): v for v in self.spec.get("volumes") or []}


@dataclass(eq=False)
class RayClusterRef:
    """One Ray cluster: a RayCluster, or the cluster a RayJob brings with it."""

    label: str  # e.g. "RayCluster llava-vsd", "RayJob llava-vsd-train-13b's cluster"
    name: str | None  # the RayCluster's name when known in advance
    spec: dict
    where: str
    pods: list[Pod] = field(default_factory=list)

    @property
    def head(self) -> Pod:
        return self.pods[0]

    def identity(self) -> dict:
        """Identity labels every pod of this cluster carries with one value."""
        out = {}
        for key in IDENTITY_KEYS:
            values = {p.labels.get(key) for p in self.pods}
            if len(values) == 1 and None not in values:
                out[key] = values.pop()
        return out

    def service_account(self) -> str | None:
        return self.head.spec.get("serviceAccountName")


def _ray_labels(template: dict, node_type: str, group: str, cluster_name: str | None) -> dict:
    labels = {
        "ray.io/is-ray-node": "yes",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    labels.update((template.get("metadata") or {}).get("labels") or {})
    labels.update({"ray.io/node-type": node_type, "ray.io/group": group})
    if cluster_name:
        labels["ray.io/cluster"] = cluster_name
    else:
        labels.pop("ray.io/cluster", None)  # KubeRay overwrites it with the generated name
    return labels


def ray_cluster(spec: dict, where: str, label: str, name: str | None) -> RayClusterRef:
    cluster = RayClusterRef(label=label, name=name, spec=spec, where=where)
    head = spec.get("headGroupSpec") or {}
    template = head.get("template") or {}
    autoscaler = (spec.get("autoscalerOptions") or {}) if spec.get("enableInTreeAutoscaling") else None
    cluster.pods.append(
        Pod(
            f"{where}.headGroupSpec.template",
            template,
            "ray-head",
            _ray_labels(template, "head", "headgroup", name),
            autoscaler,
            f"{where}.autoscalerOptions",
        )
    )
    for i, group in enumerate(spec.get("workerGroupSpecs") or []):
        template = group.get("template") or {}
        cluster.pods.append(
            Pod(
                f"{where}.workerGroupSpecs[{i}].template",
                template,
                "ray-worker",
                _ray_labels(template, "worker", str(group.get("groupName")), name),
            )
        )
    return cluster


def _submitter(job_spec: dict, where: str, rayjob_name: str | None) -> Pod | None:
    template = job_spec.get("submitterPodTemplate")
    if template is None:
        return None
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.update(
        {"ray.io/originated-from-crd": "RayJob", "app.kubernetes.io/created-by": "kuberay-operator"}
    )
    if rayjob_name:
        labels["ray.io/originated-from-cr-name"] = rayjob_name
    return Pod(f"{where}.submitterPodTemplate", template, "submitter", labels)


def needs_submitter(job_spec: dict) -> bool:
    """K8sJobMode (the default) starts a submitter pod; without a template it has no securityContext."""
    return (job_spec.get("submissionMode") or "K8sJobMode") == "K8sJobMode"


def _rayjob(
    job_spec: dict, where: str, name: str | None, label: str
) -> tuple[list[RayClusterRef], list[Pod]]:
    clusters, pods = [], []
    if job_spec.get("rayClusterSpec"):
        cluster = ray_cluster(
            job_spec["rayClusterSpec"], f"{where}.rayClusterSpec", f"{label}'s cluster", None
        )
        clusters.append(cluster)
        pods += cluster.pods
    submitter = _submitter(job_spec, where, name)
    if submitter:
        pods.append(submitter)
    return clusters, pods


def find(doc: dict) -> tuple[list[RayClusterRef], list[Pod]]:
    """The Ray clusters a document defines and every pod it makes (cluster pods included)."""
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    name = (doc.get("metadata") or {}).get("name")
    if kind == "RayCluster":
        cluster = ray_cluster(spec, "spec", f"RayCluster {name}", name)
        return [cluster], list(cluster.pods)
    if kind == "RayJob":
        return _rayjob(spec, "spec", name, f"RayJob {name}")
    if kind == "RayCronJob":
        return _rayjob(spec.get("jobTemplate") or {}, "spec.jobTemplate", None, f"RayCronJob {name}")
    if kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        return [], [_workload("spec.jobTemplate.spec.template", template)]
    if kind == "Job" or kind in WORKLOAD_KINDS:
        return [], [_workload("spec.template", spec.get("template") or {})]
    return [], []


def _workload(where: str, template: dict) -> Pod:
    """A plain pod; one that runs `ray job submit` counts as a submitter (it needs no S3 access)."""
    commands = [
        list(c.get("command") or [])[:3] for c in (template.get("spec") or {}).get("containers") or []
    ]
    role = "submitter" if ["ray", "job", "submit"] in commands else "workload"
    return Pod(where, template, role, _own_labels(template))


def rayjob_specs(doc: dict) -> list[tuple[str, dict]]:
    """(path, RayJobSpec) of a RayJob or RayCronJob document."""
    if doc.get("kind") == "RayJob":
        return [("spec", doc.get("spec") or {})]
    if doc.get("kind") == "RayCronJob":
        return [("spec.jobTemplate", (doc.get("spec") or {}).get("jobTemplate") or {})]
    return []


def _own_labels(template: dict) -> dict:
    return dict((template.get("metadata") or {}).get("labels") or {})


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """Kubernetes LabelSelector semantics (an empty selector matches everything)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True
