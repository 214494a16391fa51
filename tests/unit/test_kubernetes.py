"""deploy/kubernetes/ is valid Kubernetes, runs one supervisor Deployment per queue backend of the registry, and
keeps the Redis URL in a Secret.

Validation is offline: kubernetes-validate carries the Kubernetes JSON schemas (strict: an unknown field is
an error), and the manifests are checked against the oldest Kubernetes docs/deploy.md names and the newest
the package knows. ``kubectl kustomize deploy/kubernetes`` only adds the namespace, a label and image tags.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from implementations.backends import QUEUES, REGISTRY

ROOT = Path(__file__).resolve().parent.parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
OLDEST = "1.28.0"  # docs/deploy.md: "Kubernetes 1.28 or later"
VERSIONS = (OLDEST, kubernetes_validate.latest_version())
SECRET = "retrybench-redis"


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    return data


def resources() -> list[dict[str, Any]]:
    """Every object the kustomization applies, in its order."""
    return [doc for name in kustomization()["resources"]
            for doc in yaml.safe_load_all((KUBE / name).read_text()) if doc is not None]


def deployments() -> dict[str, dict[str, Any]]:
    """The Deployments by the backend they run (their app.kubernetes.io/component label)."""
    found = [r for r in resources() if r["kind"] == "Deployment"]
    by_backend = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in found}
    assert len(by_backend) == len(found), "two Deployments for one backend"
    return by_backend


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def validate(resource: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(resource, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_kubernetes(version: str) -> None:
    assert resources()
    for resource in resources():
        validate(resource, version)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl renders the kustomization; the files are checked")
def test_what_kubectl_apply_k_sends_is_valid_kubernetes_too() -> None:
    rendered = subprocess.run(["kubectl", "kustomize", str(KUBE)], capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    docs = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    assert len(docs) == len(resources())
    for doc in docs:
        validate(doc, kubernetes_validate.latest_version())
        assert doc["metadata"]["namespace"] == "retrybench"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "retrybench"


@pytest.mark.parametrize("break_it", [
    lambda d: d["spec"].__setitem__("replicas", "four"),
    lambda d: d["spec"]["template"]["spec"].__setitem__("containers", None),
    lambda d: container_of(d).__setitem__("imagePullPolicy", 3),
    lambda d: container_of(d)["securityContext"].__setitem__("readOnlyRootFileSystem", True),  # misspelt
    lambda d: container_of(d)["resources"].__setitem__("limit", {"cpu": "1"}),  # unknown field
], ids=["replicas-a-string", "no-containers", "pull-policy-a-number", "misspelt-field", "unknown-field"])
def test_the_validator_rejects_a_broken_manifest(break_it: Any) -> None:
    broken = copy.deepcopy(deployments()["rq"])
    break_it(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, kubernetes_validate.latest_version())


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    """The container itself (not a copy), for the broken-manifest test to change."""
    return deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def test_the_kustomization_applies_every_manifest_in_the_folder() -> None:
    files = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization()["resources"]) == sorted(files)
    assert {image["name"] for image in kustomization()["images"]} == {f"retrybench-{b}" for b in QUEUES}


def test_one_supervisor_deployment_per_queue_backend_of_the_registry() -> None:
    found = deployments()
    assert sorted(found) == sorted(QUEUES), "deploy/kubernetes/ needs a <backend>-worker.yaml per queue backend"
    for backend, deployment in found.items():
        assert (KUBE / f"{backend}-worker.yaml").is_file()
        assert deployment["metadata"]["name"] == f"retrybench-{backend}-worker"
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"] == labels == deployment["metadata"]["labels"]
        assert deployment["spec"]["replicas"] >= 1  # the scale-out knob
        box = container(deployment)
        assert box["image"] == f"retrybench-{backend}"  # the Dockerfile built with BACKEND=<backend>
        env = {e["name"]: e for e in box["env"]}
        assert env["RETRYBENCH_BACKEND"]["value"] == backend
        assert "command" not in box and "args" not in box, "the image's CMD runs the supervisor"


def test_no_manifest_names_a_backend_outside_the_registry() -> None:
    others = {"reference", *(name for name in REGISTRY if name not in QUEUES)}
    for resource in resources():
        component = resource["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        assert component is None or component in QUEUES
        assert not any(f"retrybench-{name}" in yaml.safe_dump(resource) for name in others)


def test_the_redis_url_comes_from_a_secret_and_no_manifest_holds_one() -> None:
    assert not [r for r in resources() if r["kind"] in ("Secret", "ConfigMap")], "create the Secret by hand"
    for backend, deployment in deployments().items():
        for var in container(deployment)["env"]:
            if var["name"].endswith(("_URL", "PASSWORD", "TOKEN")):
                assert "value" not in var, f"{backend}: {var['name']} is written in the manifest"
                assert var["valueFrom"]["secretKeyRef"]["name"] == SECRET
    for path in KUBE.glob("*.yaml"):
        assert "://" not in path.read_text().replace("https://", ""), f"{path.name} holds a URL"


def test_the_supervisors_run_unprivileged_with_limits_and_probes() -> None:
    for backend, deployment in deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001, "the Dockerfile's USER"
        assert pod["automountServiceAccountToken"] is False
        box = container(deployment)
        assert box["securityContext"]["readOnlyRootFilesystem"] is True
        assert box["securityContext"]["allowPrivilegeEscalation"] is False
        assert box["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert {"/tmp"} == {m["mountPath"] for m in box["volumeMounts"]}, "the one writable place"
        assert set(box["resources"]) == {"requests", "limits"}, backend
        assert {"cpu", "memory"} <= set(box["resources"]["requests"]) & set(box["resources"]["limits"])
        heartbeat = {e["name"]: e.get("value") for e in box["env"]}["RETRYBENCH_HEARTBEAT"]
        assert heartbeat.startswith("/tmp/")
        for probe in ("readinessProbe", "livenessProbe"):
            assert heartbeat in " ".join(box[probe]["exec"]["command"]), probe


def test_nothing_may_connect_to_the_workers() -> None:
    (policy,) = [r for r in resources() if r["kind"] == "NetworkPolicy"]
    assert policy["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in policy["spec"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for deployment in deployments().values():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
