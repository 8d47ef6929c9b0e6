"""deploy/k8s/gateway.yaml, checked offline: every document against the Kubernetes JSON schemas
(``kubernetes-validate`` ships them), and the parts that must agree with each other and with the agent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config.load import load_config

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "deploy" / "k8s" / "gateway.yaml"
KUBERNETES = "1.30.0"  # the oldest release k3s and MicroK8s still maintain


def documents() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs) == 4
    return by_kind


@pytest.mark.parametrize("kind", ["ConfigMap", "Secret", "PersistentVolumeClaim", "Deployment"])
def test_every_document_matches_the_kubernetes_schema(kind: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(documents()[kind], KUBERNETES, strict=True)


def test_a_broken_manifest_is_caught_by_the_schema_check() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = documents()["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = [9108]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_one_agent_per_gateway_and_never_two_at_once() -> None:
    spec = documents()["Deployment"]["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    assert documents()["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_mounts_probes_and_the_config_agree(tmp_path: Path) -> None:
    docs = documents()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert volumes["secrets"]["secret"]["secretName"] == docs["Secret"]["metadata"]["name"]
    assert (
        volumes["state"]["persistentVolumeClaim"]["claimName"]
        == docs["PersistentVolumeClaim"]["metadata"]["name"]
    )
    assert set(mounts) == set(volumes)

    # The config the ConfigMap carries, with the secret files where the pod mounts them.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for key, value in docs["Secret"]["stringData"].items():
        (secrets / key).write_text(value)
    text = docs["ConfigMap"]["data"]["config.toml"].replace(mounts["secrets"], str(secrets))
    assert container(docs)["args"] == ["run", "-c", f"{mounts['config']}/config.toml"]
    (tmp_path / "config.toml").write_text(text)
    cfg = load_config(tmp_path / "config.toml")
    assert str(cfg.agent.state_dir) == mounts["state"]
    sink = cfg.sinks[0]
    assert sink.password is not None and sink.password.get_secret_value() == "change-me"
    assert len(sink.servers or []) == 3 and sink.failover == "random"

    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    assert cfg.health.host == "0.0.0.0" and ports["health"] == cfg.health.port
    live, ready = container(docs)["livenessProbe"]["httpGet"], container(docs)["readinessProbe"]["exec"]
    assert (live["path"], live["port"]) == ("/healthz", "health")
    # /readyz takes the health token (issue 10): the probe reads it from the mounted secret.
    probe = ready["command"][-1]
    assert f"127.0.0.1:{cfg.health.port}/readyz" in probe and "Bearer" in probe
    token = docs["Secret"]["stringData"]["health-token"]
    assert cfg.health.token is not None and cfg.health.token.get_secret_value() == token.strip()
    assert f"{mounts['secrets']}/health-token" in probe
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > cfg.agent.shutdown_timeout, "the kubelet must not SIGKILL a draining agent"


def test_the_pod_runs_as_the_image_user_read_only() -> None:
    docs = documents()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert f"USER {pod['securityContext']['runAsUser']}:" in dockerfile
    assert pod["securityContext"]["runAsNonRoot"] is True
    context = container(docs)["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["capabilities"]["drop"] == ["ALL"]
