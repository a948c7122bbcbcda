"""The security rules, per document and across the set of documents deployed together.

Per document: every pod's securityContext, service-account token, credentials, images and host
ports; every Ray cluster's head Service; ServiceAccounts' automount. Across documents (they need
each other): NetworkPolicies covering every Ray pod, PodMonitors, service accounts that exist,
and each job's S3 arguments against its role's prefixes.
"""

from __future__ import annotations

from . import credentials, images, network, pod_security, s3access
from .workloads import RayClusterRef, find, rayjob_specs

Named = tuple[str, dict]  # ("cluster/x.yaml[0]", document)


def per_document(doc: dict, release: bool = False) -> list[str]:
    if doc.get("kind") == "ServiceAccount":
        return pod_security.service_account(doc)
    out = []
    for where, job_spec in rayjob_specs(doc):
        out += pod_security.submitter_template(job_spec, where)
    clusters, pods = find(doc)
    for pod in pods:
        out += pod_security.security_context(pod)
        out += pod_security.service_account_token(pod)
        out += credentials.credentials_as_files(pod)
        out += images.pod_images(pod, release)
        out += network.host_ports(pod)
    for cluster in clusters:
        out += network.exposure(cluster)
    return out


def _cluster_by_name(clusters: list[tuple[str, RayClusterRef]], name: str | None) -> RayClusterRef | None:
    return next((c for _, c in clusters if name and c.name == name), None)


def _jobs(docs: list[Named], clusters: list[tuple[str, RayClusterRef]]) -> list[str]:
    """Each job's s3:// arguments lie inside what its cluster's role may read or write."""
    out = []
    for where, doc in docs:
        for path, spec in rayjob_specs(doc):
            if spec.get("rayClusterSpec"):
                cluster = next(
                    (c for w, c in clusters if w == where and c.spec is spec["rayClusterSpec"]), None
                )
            else:
                cluster = _cluster_by_name(
                    clusters, (spec.get("clusterSelector") or {}).get("ray.io/cluster")
                )
            role = cluster.service_account() if cluster else None
            out += s3access.check_job(str(spec.get("entrypoint", "")), role, f"{where} {path}.entrypoint")
        for pod in find(doc)[1]:
            if pod.role != "submitter" or doc.get("kind") in ("RayJob", "RayCronJob"):
                continue
            for path, container in pod.containers():
                words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
                address = next((w.split("=", 1)[1] for w in words if w.startswith("--address=")), "")
                host = address.split("//")[-1].split(":")[0].split(".")[0]
                cluster = _cluster_by_name(clusters, host.removesuffix("-head-svc"))
                job = words[words.index("--") + 1 :] if "--" in words else []
                out += s3access.check_job(
                    job, cluster.service_account() if cluster else None, f"{where} {path}"
                )
    return out


def _service_accounts(docs: list[Named], pods) -> list[str]:
    accounts = {d["metadata"]["name"] for _, d in docs if d.get("kind") == "ServiceAccount"}
    out = []
    for where, pod in pods:
        name = pod.spec.get("serviceAccountName")
        if name and name not in accounts:
            out.append(
                f"{where} {pod.where}: service account {name!r} is not defined in this set "
                "(its automountServiceAccountToken cannot be checked)"
            )
    return out


def per_set(docs: list[Named]) -> list[str]:
    clusters, pods = [], []
    for where, doc in docs:
        found_clusters, found_pods = find(doc)
        for cluster in found_clusters:
            cluster.label = f"{where} {cluster.label}"
        clusters += [(where, c) for c in found_clusters]
        pods += [(where, p) for p in found_pods]
    policies = [(w, d) for w, d in docs if d.get("kind") == "NetworkPolicy"]
    monitors = [(w, d) for w, d in docs if d.get("kind") == "PodMonitor"]
    out = network.network_policies([c for _, c in clusters], [p for _, p in pods], policies)
    out += network.pod_monitors([c for _, c in clusters], monitors)
    out += _service_accounts(docs, pods)
    out += _jobs(docs, clusters)
    return out
