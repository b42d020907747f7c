"""The Kubernetes manifests: every core resource validated against the Kubernetes JSON schemas
(kubernetes-validate, strict: unknown fields are errors) for the oldest and newest Kubernetes
versions we support; the Prometheus Operator resources (CRDs, no bundled schema) checked for
their required fields; and the cross-references that no schema sees (selectors, port names,
drain timing, CPU sizing, the alert's queue budget, the models file) checked against each
other, the Dockerfile and the alert rules."""
import copy
import hashlib
import json
import re
import subprocess
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from deploytools import DEPLOY, ROOT, tool, unknown_metrics

K8S = DEPLOY / "kubernetes"
BASE = K8S / "base"
SECRET_EXAMPLE = BASE / "secret-api-keys.example.yaml"
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
# The kustomization fields the renderer below models; any other field fails the tests, so a
# tree never relies on something these tests do not render.
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "labels", "resources", "configMapGenerator", "patches", "images"}
GENERATED = "__generated__"


def load(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomization(directory):
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(k) <= KUSTOMIZATION_FIELDS, f"{directory}: fields not modelled here: {set(k) - KUSTOMIZATION_FIELDS}"
    return k


def one(resources, kind, name="rradistill"):
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def env_of(container):
    """The container's literal env values (the Secret's keys, read through valueFrom, left out)."""
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


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


def configmap_hash(configmap):
    """kustomize 5's name suffix of a generated ConfigMap: sha256 of Go's JSON of
    {data, kind, name: ""} (sorted keys, <>& escaped), first 10 hex digits with 0 1 3 a e
    swapped for g h k m t. Checked against `kubectl kustomize` (kustomize v5.5.0)."""
    doc = json.dumps({"data": configmap["data"], "kind": "ConfigMap", "name": ""},
                     sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    doc = doc.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return hashlib.sha256(doc.encode()).hexdigest()[:10].translate(str.maketrans("013ae", "ghkmt"))


def accumulate(directory):
    """One kustomization's resources with generated ConfigMaps still under their plain names:
    resources (files, or directories built recursively), configMapGenerator (create or
    replace), strategic-merge patches, image tags, then `labels` on everything."""
    k = kustomization(directory)
    resources = []
    for entry in k.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            # kustomize refuses a base that contains its overlay ("cycle detected").
            assert not directory.resolve().is_relative_to(path), f"{directory} builds on {path}, which contains it"
            resources += accumulate(path)
        else:
            resources += load(path)
    for generator in k.get("configMapGenerator", []):
        name = generator["name"]
        configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": name, "labels": dict(generator.get("options", {}).get("labels", {}))},
                     "data": {Path(f).name: (directory / f).read_text() for f in generator["files"]},
                     GENERATED: True}
        existing = [r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"] == name]
        if generator.get("behavior", "create") == "create":
            assert not existing, f"{directory}: ConfigMap {name} already exists"
            resources.append(configmap)
        else:
            assert generator["behavior"] == "replace" and len(existing) == 1 and existing[0].get(GENERATED)
            existing[0]["data"] = configmap["data"]
            existing[0]["metadata"]["labels"].update(configmap["metadata"]["labels"])
    for entry in k.get("patches", []):
        patch = yaml.safe_load((directory / entry["path"]).read_text())
        target = one(resources, patch["kind"], patch["metadata"]["name"])
        resources[resources.index(target)] = strategic_merge(target, patch)
    for image in k.get("images", []):
        for r in resources:
            if r["kind"] == "Deployment":
                for c in r["spec"]["template"]["spec"]["containers"]:
                    if c["image"].split(":")[0] == image["name"]:
                        c["image"] = f'{image["name"]}:{image["newTag"]}'
    for entry in k.get("labels", []):
        assert not entry.get("includeSelectors") and not entry.get("includeTemplates")
        for r in resources:
            r["metadata"].setdefault("labels", {}).update(entry["pairs"])
    return resources


def render(directory):
    """`kustomize build directory`, for the fields these trees use: generated ConfigMaps get
    their content-hash suffix and the Deployments' references follow."""
    resources = accumulate(directory)
    renamed = {}
    for r in resources:
        if r.pop(GENERATED, False):
            renamed[r["metadata"]["name"]] = f'{r["metadata"]["name"]}-{configmap_hash(r)}'
            r["metadata"]["name"] = renamed[r["metadata"]["name"]]
    for r in resources:
        if r["kind"] == "Deployment":
            pod = r["spec"]["template"]["spec"]
            for volume in pod.get("volumes", []):
                if "configMap" in volume:
                    volume["configMap"]["name"] = renamed.get(volume["configMap"]["name"], volume["configMap"]["name"])
            for container in pod["containers"]:
                for e in container.get("env", []):
                    ref = e.get("valueFrom", {}).get("configMapKeyRef")
                    if ref:
                        ref["name"] = renamed.get(ref["name"], ref["name"])
    return resources


def base_resources():
    return render(K8S)


def gpu_resources():
    return render(K8S / "gpu")


def test_kustomization_lists_every_manifest():
    assert kustomization(K8S)["resources"] == ["base"]
    base = kustomization(BASE)
    listed = set(base["resources"]) | {f for g in base["configMapGenerator"] for f in g["files"]}
    on_disk = {p.name for p in BASE.iterdir()} - {"kustomization.yaml", SECRET_EXAMPLE.name}
    assert listed == on_disk
    gpu = kustomization(K8S / "gpu")
    assert gpu["resources"] == ["../base"]
    listed = {p["path"] for p in gpu["patches"]} | {f for g in gpu["configMapGenerator"] for f in g["files"]}
    assert listed == {p.name for p in (K8S / "gpu").iterdir()} - {"kustomization.yaml"}


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
        "deploy/kubernetes/base/prometheusrule.yaml and deploy/prometheus/alerts.yml differ"


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

    # The queue-saturation alert divides by the budget the service exports, never a typed copy
    # of MAX_QUEUE_TOKENS that could drift from the pod's value.
    alerts = (DEPLOY / "prometheus/alerts.yml").read_text()
    assert "rradistill_queued_tokens / rradistill_max_queued_tokens" in alerts
    assert env["MAX_QUEUE_TOKENS"] not in alerts

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


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_models_configmap_is_generated_with_a_content_hash(variant):
    """The models file is a generated ConfigMap: its name carries its content's hash and the
    Deployment mounts that name, so an edit of models.toml is a new pod template (a rollout)."""
    resources = base_resources() if variant == "cpu" else gpu_resources()
    configmaps = [r for r in resources if r["kind"] == "ConfigMap"]
    assert len(configmaps) == 1
    configmap = configmaps[0]
    assert configmap["metadata"]["name"] == f"rradistill-models-{configmap_hash(configmap)}"
    source = (BASE if variant == "cpu" else K8S / "gpu") / "models.toml"
    assert configmap["data"] == {"models.toml": source.read_text()}
    volumes = one(resources, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "models-file", "configMap": {"name": configmap["metadata"]["name"]}} in volumes
    edited = dict(configmap, data={"models.toml": source.read_text() + "\n# edited\n"})
    assert configmap_hash(edited) != configmap_hash(configmap), "an edit must rename the ConfigMap"
    assert configmap["metadata"]["labels"]["app.kubernetes.io/name"] == "rradistill"


def test_cpu_and_gpu_pods_mount_different_models_files():
    cpu = one(base_resources(), "Deployment")["spec"]["template"]["spec"]["volumes"]
    gpu = one(gpu_resources(), "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert cpu != gpu


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_api_keys_come_from_an_optional_secret(version):
    """API_KEY and ADMIN_API_KEY (the service's variables, src/config.rs) are read from the
    Secret of secret-api-keys.example.yaml, optionally (no Secret: no keys); the example is
    a valid Secret, not applied by kustomize (a re-apply would overwrite real keys), and its
    placeholders are values the service refuses as keys (an unedited copy cannot serve)."""
    config = (ROOT / "src/config.rs").read_text()
    (secret,) = load(SECRET_EXAMPLE)
    kubernetes_validate.validate(secret, version, strict=True)
    assert secret["kind"] == "Secret" and secret["type"] == "Opaque"
    for resources in (base_resources(), gpu_resources()):
        assert not [r for r in resources if r["kind"] == "Secret"], "kustomize must not apply the example Secret"
        container = one(resources, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
        assert set(refs) == {"API_KEY", "ADMIN_API_KEY"}
        for variable, ref in refs.items():
            assert f'env = "{variable}"' in config
            assert ref == {"name": secret["metadata"]["name"], "key": variable, "optional": True}
            assert variable in secret["stringData"]
    for value in secret["stringData"].values():
        keys = value.split(",")  # API_KEY is comma-separated; each key: 16+ chars, no whitespace
        assert any(len(k.strip()) < 16 or any(c.isspace() for c in k.strip()) for k in keys), \
            f"placeholder {value!r} would be accepted as a real key"


def test_gpu_autoscaler_scales_on_load_not_cpu():
    """CPU pods scale on CPU; GPU pods on the service's own load signals, per pod, each one
    served by a prometheus-adapter rule (deploy/prometheus/adapter-rules.yaml) over metrics
    the service exports."""
    cpu = one(base_resources(), "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [m["resource"]["name"] for m in cpu] == ["cpu"]
    hpa = one(gpu_resources(), "HorizontalPodAutoscaler")["spec"]
    assert hpa["metrics"] and all(m["type"] == "Pods" for m in hpa["metrics"])
    rules = {r["name"]["as"]: r for r in adapter_rules()}
    for metric in hpa["metrics"]:
        name = metric["pods"]["metric"]["name"]
        assert name in rules, f"no prometheus-adapter rule exposes {name}"
        assert metric["pods"]["target"]["type"] == "AverageValue"
        assert not unknown_metrics(rules[name]["metricsQuery"] + rules[name]["seriesQuery"])
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]


def adapter_rules():
    return yaml.safe_load((DEPLOY / "prometheus/adapter-rules.yaml").read_text())["rules"]["custom"]


def test_adapter_rules_are_valid_promql(tmp_path):
    """Each rule's seriesQuery and metricsQuery (its <<.Series>>, <<.LabelMatchers>> and
    <<.GroupBy>> filled in as the adapter does for one pod) parse with promtool, and each
    maps the namespace and pod labels to their resources."""
    records = []
    for i, rule in enumerate(adapter_rules()):
        assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"},
                                                  "pod": {"resource": "pod"}}
        series = re.match(r"[a-z_]+", rule["seriesQuery"]).group(0)
        assert re.fullmatch(rule["name"]["matches"], series)
        query = (rule["metricsQuery"].replace("<<.Series>>", series)
                 .replace("<<.LabelMatchers>>", 'namespace="default",pod="rradistill-0"')
                 .replace("<<.GroupBy>>", "namespace, pod"))
        assert "<<" not in query, query
        records += [{"record": f"adapter:series_{i}", "expr": rule["seriesQuery"]},
                    {"record": f"adapter:query_{i}", "expr": query}]
    path = tmp_path / "adapter-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": records}]}))
    result = subprocess.run([tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
