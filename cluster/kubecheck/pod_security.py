"""Rules every pod must meet: who it runs as, what it may do, what it may write, which tokens it holds.

The annotate job reads manifests other teams write; if a row ever gets code to run, these rules
decide what that code can reach: not root, no new privileges, no capabilities, the runtime's
default seccomp filter, nothing writable but emptyDirs, no Kubernetes API token.
"""

from __future__ import annotations

import posixpath

from .workloads import Pod, needs_submitter

SAFE_SECCOMP = ("RuntimeDefault", "Localhost")
API_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def mounted_volume(container: dict, volumes: dict[str, dict], path: str) -> tuple[dict, dict] | None:
    """(volumeMount, volume) of the deepest mount holding ``path`` in this container, if any."""
    best = None
    for mount in container.get("volumeMounts") or []:
        root = posixpath.normpath(str(mount.get("mountPath", "")))
        if path == root or path.startswith(root.rstrip("/") + "/"):
            if best is None or len(root) > len(posixpath.normpath(best.get("mountPath", ""))):
                best = mount
    if best is None or best.get("name") not in volumes:
        return None
    return best, volumes[best["name"]]


def _writable_tmp(container: dict, volumes: dict[str, dict]) -> bool:
    for mount in container.get("volumeMounts") or []:
        if posixpath.normpath(str(mount.get("mountPath", ""))) == "/tmp" and not mount.get("readOnly"):
            return "emptyDir" in volumes.get(mount.get("name"), {})
    return False


def security_context(pod: Pod) -> list[str]:
    """runAsNonRoot, no privilege escalation, capabilities dropped, seccomp, read-only root + /tmp."""
    spec, out = pod.spec, []
    pod_sc = spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(f"{pod.where}.spec.{key}: true shares the node's namespaces with the pod")
    if spec.get("shareProcessNamespace"):
        out.append(
            f"{pod.where}.spec.shareProcessNamespace: true lets each container read the others' files "
            "through /proc/<pid>/root (the autoscaler's API token among them)"
        )
    for i, volume in enumerate(spec.get("volumes") or []):
        if "hostPath" in volume:
            out.append(f"{pod.where}.spec.volumes[{i}]: hostPath gives the pod the node's filesystem")
    volumes = pod.volumes()
    for path, container in pod.containers():
        sc = container.get("securityContext") or {}
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            out.append(
                f"{path}: securityContext.runAsNonRoot must be true (in the pod's or the container's securityContext)"
            )
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            out.append(f"{path}: securityContext.runAsUser 0 is root")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in SAFE_SECCOMP:
            out.append(
                f"{path}: securityContext.seccompProfile must be RuntimeDefault, is {seccomp or 'unset (Unconfined)'}"
            )
        if (sc.get("appArmorProfile") or pod_sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            out.append(
                f"{path}: securityContext.appArmorProfile Unconfined turns the runtime's AppArmor profile off"
            )
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{path}: securityContext.allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            out.append(f"{path}: securityContext.privileged gives the container the node")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{path}: securityContext.capabilities must drop ALL")
        if caps.get("add"):
            out.append(f"{path}: securityContext.capabilities.add {caps['add']}: no capability is needed")
        if sc.get("readOnlyRootFilesystem") is not True:
            out.append(
                f"{path}: securityContext.readOnlyRootFilesystem must be true (write to emptyDir mounts)"
            )
        elif not _writable_tmp(container, volumes):
            out.append(
                f"{path}: a read-only root needs a writable /tmp: mount an emptyDir there "
                "(Ray keeps its sessions, logs and spilled objects in /tmp/ray)"
            )
    return out


def _api_token_volumes(volumes: dict[str, dict]) -> set[str]:
    """Projected volumes holding a token for the Kubernetes API (no audience = the API server's)."""
    names = set()
    for name, volume in volumes.items():
        for source in (volume.get("projected") or {}).get("sources") or []:
            token = source.get("serviceAccountToken")
            if token is not None and not token.get("audience"):
                names.add(name)
    return names


def service_account_token(pod: Pod) -> list[str]:
    """No pod automounts an API token; only the autoscaler container mounts one, explicitly."""
    out = []
    if pod.spec.get("automountServiceAccountToken") is not False:
        out.append(
            f"{pod.where}.spec.automountServiceAccountToken must be false: the default mounts a "
            "Kubernetes API service-account token into every container"
        )
    api_volumes = _api_token_volumes(pod.volumes())
    for path, container in pod.containers():
        holds = [m.get("name") for m in container.get("volumeMounts") or [] if m.get("name") in api_volumes]
        if holds and path != pod.autoscaler_where:
            out.append(
                f"{path}: mounts a Kubernetes API service-account token (volume {holds[0]}); "
                "only the autoscaler needs one"
            )
    if pod.autoscaler is not None:
        mounts = {
            posixpath.normpath(str(m.get("mountPath", ""))): m.get("name")
            for m in pod.autoscaler.get("volumeMounts") or []
        }
        if mounts.get(API_TOKEN_DIR) not in api_volumes:
            out.append(
                f"{pod.autoscaler_where}.volumeMounts: the autoscaler needs a Kubernetes API token: mount a "
                f"projected serviceAccountToken volume (no audience) at {API_TOKEN_DIR}"
            )
    return out


def service_account(doc: dict) -> list[str]:
    if doc.get("automountServiceAccountToken") is not False:
        return [
            "automountServiceAccountToken must be false: pods of this account get no API token by default"
        ]
    return []


def submitter_template(job_spec: dict, where: str) -> list[str]:
    """A K8sJobMode RayJob without submitterPodTemplate gets KubeRay's default pod: no securityContext."""
    if needs_submitter(job_spec) and not job_spec.get("submitterPodTemplate"):
        return [
            f"{where}.submitterPodTemplate: missing; KubeRay would start the `ray job submit` pod "
            "with no securityContext"
        ]
    return []
