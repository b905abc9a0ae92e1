"""deploy/kubernetes: schema-valid manifests, generated objects in step with their one source, wiring that agrees.

Built-in kinds are validated offline against the Kubernetes 1.30 and 1.37
OpenAPI schemas (kubernetes-validate, strict: unknown fields fail); the
Prometheus Operator kinds, which it has no schema for, are checked here for
the fields their CRDs require.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests._collector_procs import COLLECTOR_DIR, RULES

K8S = COLLECTOR_DIR.parent / "deploy" / "kubernetes"
CRD_KINDS = {("monitoring.coreos.com/v1", "PodMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("otel_ml_k8s_generate", K8S / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _manifests() -> dict[str, list[dict[str, Any]]]:
    """Every Kubernetes object under deploy/kubernetes, by file (kustomization and Prometheus config aside)."""
    found = {}
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found[str(path.relative_to(K8S))] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return found


def _objects(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for docs in _manifests().values() for o in docs if o["kind"] == kind}


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    (container,) = obj["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_generated_objects_match_their_one_source() -> None:
    generator = _generator()
    for path, text in generator.outputs().items():
        assert path.read_text() == text, f"{path} is stale: run python deploy/kubernetes/generate.py"
    assert generator.main(["--check"]) == 0
    rule = yaml.safe_load((K8S / "generated" / "prometheusrule.yaml").read_text())
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    config = yaml.safe_load((K8S / "generated" / "collector-config.yaml").read_text())
    assert config["data"] == {n: (COLLECTOR_DIR / n).read_text() for n in ("agent.yaml", "gateway.yaml")}


def test_generator_check_names_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generator = _generator()
    generator.GENERATED = tmp_path
    generator.RULES = tmp_path / "rules.yml"
    generator.RULES.write_text("groups: []\n")
    generator.ROOT = tmp_path
    assert generator.main(["--check"]) == 1
    assert "prometheusrule.yaml is stale" in capsys.readouterr().err
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0
    assert (tmp_path / "prometheusrule.yaml").read_text().endswith("spec:\n  groups: []\n")


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
def test_builtin_kinds_pass_the_schema_validator(version: str) -> None:
    kinds = []
    for name, docs in _manifests().items():
        for doc in docs:
            if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {exc}")
            kinds.append(doc["kind"])
    assert sorted(kinds) == ["ConfigMap", "DaemonSet", "DaemonSet", "Deployment", "Job", "Namespace", "Service"]


def test_the_validator_rejects_a_broken_manifest() -> None:
    agent = _objects("DaemonSet")["otel-ml-agent"]
    broken = json.loads(json.dumps(agent))
    _container(broken)["ports"][0]["hostport"] = 4317  # a typo: unknown field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)


def test_podmonitors_have_their_required_fields_and_select_real_ports() -> None:
    monitors = _objects("PodMonitor")
    assert sorted(monitors) == ["otel-ml-gateway", "otel-ml-gpu", "otel-ml-training"]
    pods = {
        "otel-ml-training": _manifests()["examples/training-job.yaml"][0],
        "otel-ml-gpu": _objects("DaemonSet")["otel-ml-gpu"],
        "otel-ml-gateway": _objects("Deployment")["otel-ml-gateway"],
    }
    for name, monitor in monitors.items():
        spec = monitor["spec"]
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        # The CRD requires spec.selector; endpoints name a port (or portNumber).
        labels = spec["selector"]["matchLabels"]
        template = pods[name]["spec"]["template"]
        assert labels.items() <= template["metadata"]["labels"].items(), name
        ports = {p["name"] for p in _container(pods[name])["ports"]}
        for endpoint in spec["podMetricsEndpoints"]:
            assert endpoint["port"] in ports, name
            assert DURATION.match(endpoint["interval"]), name
    assert monitors["otel-ml-gateway"]["spec"]["podMetricsEndpoints"][0]["honorLabels"] is True
    assert monitors["otel-ml-training"]["spec"]["jobLabel"] == "job-name"
    assert monitors["otel-ml-training"]["spec"]["namespaceSelector"] == {"any": True}


def test_prometheusrule_has_the_fields_its_crd_requires() -> None:
    (rule,) = _objects("PrometheusRule").values()
    groups = rule["spec"]["groups"]
    assert [g["name"] for g in groups] == [
        "otel_ml_thresholds",
        "otel_ml_training",
        "otel_ml_inference",
        "otel_ml_gpu",
        "otel_ml_model_quality",
        "otel_ml_collector",
    ]
    for group in groups:
        for r in group["rules"]:
            assert isinstance(r["expr"], str) and r["expr"].strip()
            assert ("alert" in r) != ("record" in r), r
            assert "for" not in r or DURATION.match(r["for"]), r
            for key in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in r.get(key, {}).values()), r


def test_kustomization_lists_every_object_and_sets_every_image() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert sorted(listed) == sorted(n for n in _manifests() if not n.startswith("examples/"))
    images = {i["name"] for i in kustomization["images"]}
    used = {
        _container(o)["image"].split(":")[0]
        for n in listed
        for o in _manifests()[n]
        if o["kind"] in ("DaemonSet", "Deployment")
    }
    assert used == images == {"otelcol-ml", "otel-ml"}


def test_collectors_bind_the_pod_ip_and_the_agent_reaches_the_gateway_service() -> None:
    agent, gateway = _objects("DaemonSet")["otel-ml-agent"], _objects("Deployment")["otel-ml-gateway"]
    service = _objects("Service")["otel-ml-gateway"]
    for obj, config in ((agent, "agent.yaml"), (gateway, "gateway.yaml")):
        container = _container(obj)
        assert container["args"] == ["--config", f"/etc/otelcol/{config}"]
        env = _env(container)
        assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        text = (COLLECTOR_DIR / config).read_text()
        for name, value in env.items():
            if name.startswith("OTELCOL_"):
                assert f"${{env:{name}:-" in text, (config, name)  # the config reads this variable
                assert "0.0.0.0" not in value
    assert _env(_container(agent))["OTELCOL_GATEWAY_ENDPOINT"] == "otel-ml-gateway:4317"
    assert {"name": "otlp-grpc", "port": 4317, "targetPort": "otlp-grpc"} in service["spec"]["ports"]
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "otel-ml-gateway"}
    host_ports = {p["hostPort"] for p in _container(agent)["ports"]}
    assert host_ports == {4317, 4318}
    assert agent["spec"]["template"]["spec"]["tolerations"] == [{"operator": "Exists"}]


def test_gpu_daemonset_runs_otel_ml_gpu_on_gpu_nodes_and_is_annotated() -> None:
    gpu = _objects("DaemonSet")["otel-ml-gpu"]
    pod = gpu["spec"]["template"]
    container = _container(gpu)
    assert container["command"] == ["otel-ml", "gpu", "--host", "$(POD_IP)", "--port", "9464"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9464",
        "prometheus.io/path": "/metrics",
    }
    assert "resources" not in container or "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert _env(container)["OTEL_RESOURCE_ATTRIBUTES"] == "service.instance.id=$(NODE_NAME)"


def test_training_job_gives_each_worker_its_identity_on_the_resource(tmp_path: Path) -> None:
    job = _manifests()["examples/training-job.yaml"][0]
    container = _container(job)
    env = _env(container)
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == "service.instance.id=$(POD_NAME)"
    assert env["OTEL_EXPORTER_PROMETHEUS_HOST"] == "$(POD_IP)"
    # Run the Job's own shell command as worker 3 would, with Python printing the resource instead of training.
    shell = container["command"][2]
    assert shell.endswith("exec opentelemetry-instrument python /app/train.py")
    probe = (
        "from otel_ml.distro._resource import build_resource; import json; "
        "print(json.dumps(dict(build_resource().attributes)))"
    )
    shell = shell.replace("opentelemetry-instrument python /app/train.py", f"{sys.executable} -c '{probe}'")
    run_env = {
        "JOB_COMPLETION_INDEX": "3",  # set by Kubernetes in an Indexed Job
        "OTEL_SERVICE_NAME": env["OTEL_SERVICE_NAME"],
        # Kubernetes expands $(POD_NAME) from the pod's own name.
        "OTEL_RESOURCE_ATTRIBUTES": env["OTEL_RESOURCE_ATTRIBUTES"].replace("$(POD_NAME)", "resnet-lr01-3-x7k2p"),
        "PYTHONPATH": str(COLLECTOR_DIR.parent),
    }
    proc = subprocess.run(
        [container["command"][0], "-c", shell], env=run_env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    attributes = json.loads(proc.stdout)
    identity = ("service.name", "service.instance.id", "ml.worker.type", "ml.worker.index")
    assert {k: attributes.get(k) for k in identity} == {
        "service.name": "resnet-lr01",
        "service.instance.id": "resnet-lr01-3-x7k2p",
        "ml.worker.type": "worker",
        "ml.worker.index": 3,
    }
    template = job["spec"]["template"]["metadata"]
    assert template["labels"] == {"otel-ml.io/metrics": "embedded"}
    assert template["annotations"]["prometheus.io/port"] == str(container["ports"][0]["containerPort"]) == "9464"


def test_in_cluster_prometheus_config_relabels_validly(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; scripts/test.sh installs it)")
    text = (K8S / "prometheus" / "prometheus.yml").read_text()
    # Debian's Prometheus is built without Kubernetes discovery: check everything else,
    # the relabelling rules included, with static targets in its place.
    assert text.count("kubernetes_sd_configs:\n      - role: pod\n") == 2
    text = text.replace("kubernetes_sd_configs:\n      - role: pod\n", "static_configs:\n      - targets: []\n")
    (tmp_path / "prometheus.yml").write_text(text)
    config = tmp_path / "prometheus.yml"
    proc = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is valid prometheus config file syntax" in proc.stdout
