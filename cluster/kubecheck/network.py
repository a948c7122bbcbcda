"""Who can reach a Ray cluster: NetworkPolicies, Services, host ports and the metrics scrape.

Ray's endpoints carry no per-request authorization beyond the cluster token: the GCS (6379) and
the Ray client (10001) let a peer run code, the dashboard (8265) submits jobs, and the metrics port
(8080) is unauthenticated. So every pod of a Ray cluster must be selected by a NetworkPolicy whose
rules admit
- any port only from the cluster's own pods (a same-namespace podSelector naming the cluster by
  an identity label: ray.io/cluster, or app.kubernetes.io/instance for a RayJob's cluster);
- the dashboard or metrics port from other pinned peers (a non-empty podSelector, plus a
  namespaceSelector naming one namespace for the operator or Prometheus);
- nothing from ipBlocks or from every source.
The head Service stays ClusterIP, no container binds a hostPort, and a PodMonitor scrapes only its
own namespace's Ray pods on their metrics port.
"""

from __future__ import annotations

from .workloads import IDENTITY_KEYS, Pod, RayClusterRef, selector_matches

NS_NAME_LABEL = "kubernetes.io/metadata.name"


def exposure(cluster: RayClusterRef) -> list[str]:
    """The head Service must not leave the cluster; no host ports anywhere."""
    out, head = [], cluster.spec.get("headGroupSpec") or {}
    kind = head.get("serviceType")
    if kind not in (None, "ClusterIP"):
        out.append(
            f"{cluster.where}.headGroupSpec.serviceType: {kind} exposes the dashboard, GCS, client and metrics "
            "ports beyond the cluster; use ClusterIP"
        )
    service_kind = ((head.get("headService") or {}).get("spec") or {}).get("type")
    if service_kind not in (None, "ClusterIP"):
        out.append(
            f"{cluster.where}.headGroupSpec.headService.spec.type: {service_kind} exposes the head beyond the cluster"
        )
    if head.get("enableIngress"):
        out.append(
            f"{cluster.where}.headGroupSpec.enableIngress: an Ingress exposes the dashboard beyond the cluster"
        )
    return out


def host_ports(pod: Pod) -> list[str]:
    out = []
    for path, container in pod.containers(with_autoscaler=False):
        for i, port in enumerate(container.get("ports") or []):
            if port.get("hostPort"):
                out.append(
                    f"{path}.ports[{i}]: hostPort {port['hostPort']} publishes {port.get('name') or 'a port'} "
                    "on the node's address, around every NetworkPolicy"
                )
    return out


def _port(params: dict, key: str, default: int) -> int | str:
    value = str(params.get(key, default))
    return int(value) if value.isdigit() else value


def _ports(cluster: RayClusterRef) -> tuple[set, set]:
    """(dashboard, metrics) ports of a cluster, by number and by name."""
    params = (cluster.spec.get("headGroupSpec") or {}).get("rayStartParams") or {}
    dashboard = {_port(params, "dashboard-port", 8265), "dashboard"}
    metrics = {_port(params, "metrics-export-port", 8080), "metrics"}
    for group in cluster.spec.get("workerGroupSpecs") or []:
        metrics.add(_port(group.get("rayStartParams") or {}, "metrics-export-port", 8080))
    return dashboard, metrics


def _describe(peer: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in peer.items()) or "{}"


def _rule_problems(rule: dict, cluster: RayClusterRef, foreign: list[Pod], where: str) -> list[str]:
    dashboard, metrics = _ports(cluster)
    ports = {p.get("port") for p in rule.get("ports") or []}
    narrow = bool(ports) and None not in ports and ports <= dashboard | metrics
    what = (
        f"ports {sorted(map(str, ports))}"
        if narrow
        else "every port (GCS 6379, client 10001, dashboard 8265, ...)"
    )
    peers = rule.get("from") or []
    if not peers:
        return [f"{where}: admits {what} from every source; name the peers in `from`"]
    identity, out = cluster.identity(), []
    for i, peer in enumerate(peers):
        at = f"{where}.from[{i}]"
        pods, namespaces = peer.get("podSelector"), peer.get("namespaceSelector")
        if "ipBlock" in peer:
            out.append(f"{at}: admits {what} from an IP block (addresses outside the cluster's pods)")
            continue
        if not narrow:
            names_cluster = any((pods or {}).get("matchLabels", {}).get(k) == v for k, v in identity.items())
            strays = [p.where for p in foreign if selector_matches(pods, p.labels)]
            if namespaces is not None or not names_cluster or strays:
                out.append(
                    f"{at}: admits {what} from pods outside {cluster.label} ({_describe(peer)}); only the "
                    f"cluster's own pods (podSelector on {' or '.join(f'{k}={v}' for k, v in identity.items()) or 'an identity label'}) may reach them"
                )
            continue
        if not (pods or {}).get("matchLabels") and not (pods or {}).get("matchExpressions"):
            out.append(
                f"{at}: admits {what} from every pod of {'the selected namespaces' if namespaces is not None else 'the namespace'}; "
                "name the pods (podSelector.matchLabels)"
            )
        if namespaces is not None and not (namespaces.get("matchLabels") or {}).get(NS_NAME_LABEL):
            out.append(f"{at}: admits {what} from every namespace; name one ({NS_NAME_LABEL})")
    return out


def network_policies(
    clusters: list[RayClusterRef], pods: list[Pod], policies: list[tuple[str, dict]]
) -> list[str]:
    """Every Ray pod is selected by an Ingress NetworkPolicy; every admitting rule names its peers."""
    out, seen = [], set()
    ingress_policies = [
        (f, d) for f, d in policies if "Ingress" in ((d.get("spec") or {}).get("policyTypes") or ["Ingress"])
    ]
    for cluster in clusters:
        if not cluster.identity():
            out.append(
                f"{cluster.label}: its pods share no identity label ({' or '.join(IDENTITY_KEYS)}) a "
                "NetworkPolicy could name them by"
            )
        foreign = [p for p in pods if p not in cluster.pods]
        for pod in cluster.pods:
            selecting = [
                (f, d)
                for f, d in ingress_policies
                if selector_matches((d.get("spec") or {}).get("podSelector"), pod.labels)
            ]
            if not selecting:
                out.append(
                    f"{cluster.label} {pod.where}: no NetworkPolicy selects these pods, so GCS (6379), the Ray "
                    "client (10001), the dashboard (8265) and metrics are open to every pod"
                )
            for file, policy in selecting:
                for i, rule in enumerate((policy.get("spec") or {}).get("ingress") or []):
                    key = (id(cluster), file, i)
                    if key not in seen:
                        seen.add(key)
                        out += _rule_problems(
                            rule,
                            cluster,
                            foreign,
                            f"{file} NetworkPolicy {policy['metadata']['name']} spec.ingress[{i}]",
                        )
    return out


def pod_monitors(clusters: list[RayClusterRef], monitors: list[tuple[str, dict]]) -> list[str]:
    """Scrape only this namespace, only Ray pods, only their metrics port."""
    out = []
    ray_pods = [p for c in clusters for p in c.pods]
    for file, doc in monitors:
        spec, where = doc.get("spec") or {}, f"{file} PodMonitor {doc['metadata']['name']}"
        if (spec.get("namespaceSelector") or {}).get("any"):
            out.append(
                f"{where}: namespaceSelector.any scrapes every namespace; leave it out (its own namespace only)"
            )
        selected = [p for p in ray_pods if selector_matches(spec.get("selector"), p.labels)]
        if not selected:
            out.append(f"{where}: its selector matches none of the Ray pods")
        for i, endpoint in enumerate(spec.get("podMetricsEndpoints") or []):
            for pod in selected:
                names = {
                    p.get("name"): p.get("containerPort")
                    for _, c in pod.containers(with_autoscaler=False)
                    for p in c.get("ports") or []
                }
                cluster = next(c for c in clusters if pod in c.pods)
                if names.get(endpoint.get("port")) not in _ports(cluster)[1]:
                    out.append(
                        f"{where}.podMetricsEndpoints[{i}]: port {endpoint.get('port')!r} is not the metrics port "
                        f"of {cluster.label} {pod.where}"
                    )
                    break
    return out
