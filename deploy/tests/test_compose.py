"""deploy/compose.yaml, statically (no Docker here): the Compose structure, every file a
service mounts is in the repository, ports and targets agree across the file, the image,
Prometheus' scrape config and Grafana's provisioning, and Prometheus' configuration passes
`promtool check config` with the shipped alert rules."""
import re
import subprocess

import pytest
import yaml

from deploytools import DEPLOY, ROOT, tool

COMPOSE = DEPLOY / "compose.yaml"
TOP_LEVEL = {"name", "services", "volumes", "networks", "configs", "secrets"}
SERVICE_KEYS = {"build", "image", "command", "environment", "ports", "volumes", "depends_on", "read_only",
                "tmpfs", "stop_grace_period", "restart", "healthcheck"}


def compose():
    return yaml.safe_load(COMPOSE.read_text())


def services():
    return compose()["services"]


def container_ports(service):
    """container port -> host port of `HOST:CONTAINER` mappings."""
    out = {}
    for mapping in service.get("ports", []):
        match = re.fullmatch(r"(\d+):(\d+)(/tcp)?", str(mapping))
        assert match, f"port mapping {mapping!r}: write HOST:CONTAINER, quoted"
        out[int(match.group(2))] = int(match.group(1))
    return out


def mounts(service):
    """(source, target, read_only) of each volume entry, short syntax."""
    out = []
    for entry in service.get("volumes", []):
        parts = entry.split(":")
        assert len(parts) in (2, 3), entry
        out.append((parts[0], parts[1], parts[2:] == ["ro"]))
    return out


def mount_of(service, target):
    found = [(s, t) for s, t, _ in mounts(service) if t == target]
    assert len(found) == 1, f"nothing mounted at {target}"
    return (DEPLOY / found[0][0]).resolve()


def dockerfile_env():
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env = {}
    for line in re.findall(r"^ENV (.+)$", text, re.M):
        env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def test_structure():
    c = compose()
    assert set(c) <= TOP_LEVEL
    assert set(c["services"]) == {"rradistill", "prometheus", "grafana"}
    for name, service in c["services"].items():
        assert set(service) <= SERVICE_KEYS, f"{name}: unexpected keys {set(service) - SERVICE_KEYS}"
        assert "image" in service or "build" in service, name
        for dependency in service.get("depends_on", []):
            assert dependency in c["services"], f"{name} depends on unknown {dependency}"
        for source, _, _ in mounts(service):
            if not source.startswith("."):
                assert source in c.get("volumes", {}), f"{name}: volume {source} not declared"
    declared = set(c.get("volumes", {}))
    used = {s for svc in c["services"].values() for s, _, _ in mounts(svc) if not s.startswith(".")}
    assert declared == used, "declared volumes and used volumes differ"


def test_images_are_pinned():
    for name, service in services().items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
        assert "/" not in image.split(":")[0] or image.count("/") == 1, f"{name}: no registry host in {image}"


def test_every_mounted_file_exists_and_is_read_only():
    for name, service in services().items():
        for source, target, read_only in mounts(service):
            if source.startswith("."):
                path = (DEPLOY / source).resolve()
                assert path.exists(), f"{name} mounts {source}, which is not in the repository"
                assert path.is_relative_to(ROOT), f"{name} mounts {source}, outside the repository"
                assert read_only, f"{name}: mount {source} read-only"
            assert target.startswith("/"), target


def test_service_is_built_from_the_repositorys_dockerfile():
    service = services()["rradistill"]
    context = (DEPLOY / service["build"]["context"]).resolve()
    assert context == ROOT
    dockerfile = (context / service["build"]["dockerfile"])
    assert dockerfile.exists()
    assert "ARG RUNTIME" in dockerfile.read_text()
    assert set(service["build"].get("args", {})) <= {"RUNTIME"}
    assert service["image"].split(":")[0] == "rradistill"


def test_service_ports_match_the_image():
    service = services()["rradistill"]
    env = dockerfile_env()
    expose = {int(p) for p in re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.M).group(1).split()}
    ports = container_ports(service)
    assert set(ports) == expose == {int(env["PORT"]), int(env["GRPC_PORT"])}
    assert "PORT" not in service.get("environment", {}) and "GRPC_PORT" not in service.get("environment", {})


def test_host_ports_do_not_collide():
    host = [h for s in services().values() for h in container_ports(s).values()]
    assert len(host) == len(set(host))


def test_api_keys_pass_through_and_default_to_none():
    env = services()["rradistill"]["environment"]
    config = (ROOT / "src/config.rs").read_text()
    for variable in ("API_KEY", "ADMIN_API_KEY"):
        assert f'env = "{variable}"' in config
        assert env[variable] == f"${{{variable}:-}}", "an unset key must reach the service as empty (no key)"


def test_prometheus_loads_the_alerts_and_scrapes_the_service():
    prometheus = services()["prometheus"]
    flags = dict(f.lstrip("-").split("=", 1) for f in prometheus["command"])
    config_path = mount_of(prometheus, flags["config.file"])
    assert config_path == DEPLOY / "prometheus/prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    for rule_file in config["rule_files"]:
        assert mount_of(prometheus, rule_file) == DEPLOY / "prometheus/alerts.yml"
    (job,) = config["scrape_configs"]
    # The target-down alert and the dashboard's "Pods up" select job="rradistill".
    assert job["job_name"] == "rradistill"
    assert 'job="rradistill"' in (DEPLOY / "prometheus/alerts.yml").read_text()
    assert job.get("metrics_path", "/metrics") == "/metrics"
    (target,) = [t for sc in job["static_configs"] for t in sc["targets"]]
    host, port = target.split(":")
    assert host in services(), f"scrape target {host} is not a compose service"
    assert int(port) == int(dockerfile_env()["PORT"]) and int(port) in container_ports(services()[host])
    for name, path in [("data", flags["storage.tsdb.path"])]:
        assert any(t == path for _, t, _ in mounts(prometheus)), f"{name}: {path} not on a volume"


def test_prometheus_config_passes_promtool(tmp_path):
    """promtool check config, with the rule file paths pointed at the repository's copies."""
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    config["rule_files"] = [str(mount_of(services()["prometheus"], f)) for f in config["rule_files"]]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([tool("promtool"), "check", "config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisions_the_datasource_and_the_dashboard():
    grafana = services()["grafana"]
    provisioning = mount_of(grafana, "/etc/grafana/provisioning")
    assert provisioning == DEPLOY / "grafana/provisioning"
    assert {p.name for p in provisioning.iterdir()} <= {"datasources", "dashboards", "alerting", "plugins"}

    (sources,) = [yaml.safe_load(p.read_text()) for p in (provisioning / "datasources").glob("*.yaml")]
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    match = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", source["url"])
    assert match and match.group(1) in services(), source["url"]
    prometheus = services()[match.group(1)]
    listen = dict(f.lstrip("-").split("=", 1) for f in prometheus["command"]).get("web.listen-address", ":9090")
    assert int(match.group(2)) == int(listen.rsplit(":", 1)[1]) and int(match.group(2)) in container_ports(prometheus)

    dashboard = yaml.safe_load((DEPLOY / "grafana/rradistill.json").read_text())
    datasource_variable = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert datasource_variable and datasource_variable[0]["query"] == source["type"]

    (providers,) = [yaml.safe_load(p.read_text()) for p in (provisioning / "dashboards").glob("*.yaml")]
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    folder = provider["options"]["path"]
    dashboards = [(s, t) for s, t, _ in mounts(grafana) if t.rsplit("/", 1)[0] == folder]
    assert [(DEPLOY / s).resolve() for s, _ in dashboards] == [DEPLOY / "grafana/rradistill.json"]
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home in (None, dashboards[0][1])


@pytest.mark.parametrize("path", ["prometheus/prometheus.yml", "grafana/provisioning/datasources/prometheus.yaml",
                                  "grafana/provisioning/dashboards/rradistill.yaml"])
def test_no_registry_or_internet_host_in_configuration(path):
    """Everything compose runs talks to its own services by name; nothing reaches outside."""
    text = (DEPLOY / path).read_text()
    for url in re.findall(r"https?://([^/:\s]+)", text):
        assert url in services(), f"{path}: {url} is not a compose service"
