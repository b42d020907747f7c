"""The Kubernetes manifests: every core resource validated against the Kubernetes JSON schemas
(kubernetes-validate, strict: unknown fields are errors) for the oldest and newest Kubernetes
versions we support; the Prometheus Operator resources (CRDs, no bundled schema) checked for
their required fields; and the cross-references that no schema sees (selectors, port names,
drain timing, CPU sizing, the alert's queue budget, the models file) checked against each
other, the Dockerfile and the alert rules."""
import copy
import re
import tomllib

import kubernetes_validate
import pytest
import yaml

from deploytools import DEPLOY, ROOT

K8S = DEPLOY / "kubernetes"
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def load(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def base_resources():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in load(K8S / name)]


def one(resources, kind, name="rradistill"):
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def env_of(container):
    return {e["name"]: e["value"] for e in container["env"]}


def strategic_merge(base, patch):
    """kustomize's strategic merge for what the GPU patches use: maps merge, lists of maps
    with a `name` merge by name, other lists and scalars are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = strategic_merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if (isinstance(base, list) and isinstance(patch, list) and patch
            and all(isinstance(x, dict) and "name" in x for x in base + patch)):
        out = [copy.deepcopy(x) for x in base]
        for item in patch:
            match = [i for i, x in enumerate(out) if x["name"] == item["name"]]
            if match:
                out[match[0]] = strategic_merge(out[match[0]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def gpu_resources():
    kustomization = yaml.safe_load((K8S / "gpu/kustomization.yaml").read_text())
    assert kustomization["resources"] == [".."]
    resources = base_resources()
    for entry in kustomization["patches"]:
        patch = yaml.safe_load((K8S / "gpu" / entry["path"]).read_text())
        target = one(resources, patch["kind"], patch["metadata"]["name"])
        resources[resources.index(target)] = strategic_merge(target, patch)
    for image in kustomization["images"]:
        for r in resources:
            if r["kind"] == "Deployment":
                for c in r["spec"]["template"]["spec"]["containers"]:
                    if c["image"].split(":")[0] == image["name"]:
                        c["image"] = f'{image["name"]}:{image["newTag"]}'
    return resources


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_core_resources_match_the_kubernetes_schemas(variant, version):
    resources = base_resources() if variant == "cpu" else gpu_resources()
    core = [r for r in resources if r["kind"] not in CRD_KINDS]
    assert {r["kind"] for r in core} == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
                                         "PodDisruptionBudget"}
    for resource in core:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{variant} {resource['kind']}/{resource['metadata']['name']} (Kubernetes {version}): "
                        f"{e.message} at {list(e.path)}", pytrace=False)


def test_service_monitor_required_fields():
    sm = one(base_resources(), "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    service = one(base_resources(), "Service")
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    headless = one(base_resources(), "Service", "rradistill-grpc")
    assert "app.kubernetes.io/component" in headless["metadata"]["labels"], "the headless Service must not be scraped"
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in sm["spec"]["endpoints"]:
        assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
        assert re.fullmatch(r"\d+s", endpoint["interval"])


def test_prometheus_rule_carries_exactly_the_alert_rules():
    rule = one(base_resources(), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text()), \
        "deploy/kubernetes/prometheusrule.yaml and deploy/prometheus/alerts.yml differ"


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_deployment_wiring(variant):
    resources = base_resources() if variant == "cpu" else gpu_resources()
    deployment = one(resources, "Deployment")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container = one([dict(c, kind="c", metadata={"name": c["name"]}) for c in pod["spec"]["containers"]],
                    "c", "rradistill")
    env = env_of(container)

    # Probes: liveness on /health, readiness on /ready (503 while draining).
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"

    # SIGTERM drains for DRAIN_TIMEOUT_SECS after preStop; the kubelet must wait longer.
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["spec"]["terminationGracePeriodSeconds"] > pre_stop + int(env["DRAIN_TIMEOUT_SECS"])

    # The CPU request is what the inference threads use.
    cpu = float(container["resources"]["requests"]["cpu"])
    assert int(env["SESSIONS"]) * int(env["INTRA_THREADS"]) <= cpu

    # The queue-saturation alert divides by MAX_QUEUE_TOKENS.
    alerts = (DEPLOY / "prometheus/alerts.yml").read_text()
    assert f'/ {env["MAX_QUEUE_TOKENS"]} >' in alerts

    # Non-root, matching the Dockerfile's USER.
    uid = re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M).group(1)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert str(pod["spec"]["securityContext"]["runAsUser"]) == uid

    # Ports: the container's, the Dockerfile's EXPOSE, the env and the Service agree.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(env["PORT"]), "grpc": int(env["GRPC_PORT"])}
    expose = re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.M).group(1).split()
    assert sorted(map(int, expose)) == sorted(ports.values())
    for service in (r for r in resources if r["kind"] == "Service"):
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports

    # The models file is mounted where MODELS_FILE says, and agrees with MODEL_DIR.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volume = one([dict(v, kind="v", metadata={"name": v["name"]}) for v in pod["spec"]["volumes"]],
                 "v", "models-file")
    configmap = one(resources, "ConfigMap", volume["configMap"]["name"])
    assert env["MODELS_FILE"] == mounts["models-file"] + "/models.toml"
    models = tomllib.loads(configmap["data"]["models.toml"])
    default = [m for m in models["model"] if m["name"] == models["default"]]
    assert len(default) == 1 and default[0]["path"] == env["MODEL_DIR"]
    assert env["MODEL_DIR"] in (ROOT / "Dockerfile").read_text()

    # HPA and PDB point at this Deployment's pods.
    hpa = one(resources, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rradistill"}
    assert hpa["spec"]["minReplicas"] >= 2, "one pod cannot drain without an outage"
    pdb = one(resources, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    if variant == "gpu":
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert pod["spec"]["nodeSelector"]
        assert container["image"].endswith("-cuda")
        assert default[0]["execution_provider"] == "cuda"
        assert default[0]["sessions"] == int(env["SESSIONS"])
    else:
        assert default[0]["execution_provider"] == "cpu"
        assert default[0]["sessions"] == int(env["SESSIONS"])
        assert default[0]["intra_threads"] == int(env["INTRA_THREADS"])
