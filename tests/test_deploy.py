"""Deployment files: every Envoy config in the repository passes `envoy --mode validate`, the
docker-compose file is valid and runs Envoy with envoy/envoy.yaml, and every plugin configuration
the Istio / compose / Envoy files carry is accepted by the filter's config parser."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import paths
import stack as stacklib
from stack import ROOT, render_envoy_config, write_yaml

ENVOY = paths.path("envoy")
ISTIO = ROOT / "envoy" / "istio"
COMPOSE = ROOT / "envoy" / "docker-compose.yaml"
SKIP_DIRS = {".git", ".venv", "target", ".run", "node_modules", "__pycache__"}


def repo_yaml_files() -> list[Path]:
    out = []
    for p in sorted(ROOT.rglob("*.y*ml")):
        if not SKIP_DIRS.intersection(p.relative_to(ROOT).parts):
            out.append(p)
    return out


def envoy_bootstraps() -> list[Path]:
    """Every Envoy bootstrap config in the repository (a YAML document with static_resources)."""
    found = []
    for p in repo_yaml_files():
        try:
            docs = list(yaml.safe_load_all(p.read_text()))
        except yaml.YAMLError:
            continue
        if any(isinstance(d, dict) and "static_resources" in d for d in docs):
            found.append(p)
    return found


def validate(config: Path | dict, tmp_path: Path, cwd: Path = ROOT) -> None:
    if isinstance(config, dict):
        config = write_yaml(config, tmp_path / "envoy.yaml")
    # The filter reads its bridge token from this variable at configure time.
    env = {**os.environ, "SEMCACHE_BRIDGE_TOKEN": "validate-token"}
    r = subprocess.run([str(ENVOY), "--mode", "validate", "-c", str(config), "--log-level", "warn",
                        "--disable-hot-restart"],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"envoy --mode validate {config}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def _without_filter(cfg: dict) -> dict:
    """The same bootstrap with the semcache wasm filter (and its per-route entries) removed."""
    cfg = copy.deepcopy(cfg)
    for listener in cfg["static_resources"].get("listeners", []):
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                hcm = f.get("typed_config", {})
                if "http_filters" not in hcm:
                    continue
                hcm["http_filters"] = [h for h in hcm["http_filters"]
                                       if "wasm" not in json.dumps(h.get("typed_config", {}))]
                for vh in hcm.get("route_config", {}).get("virtual_hosts", []):
                    for r in vh["routes"]:
                        r.pop("typed_per_filter_config", None)
    return cfg


def test_the_canonical_config_is_found():
    assert ROOT / "envoy" / "envoy.yaml" in envoy_bootstraps()


@pytest.mark.parametrize("path", envoy_bootstraps(), ids=lambda p: str(p.relative_to(ROOT)))
def test_envoy_config_validates_without_filter(path, tmp_path):
    """Everything but the wasm module: listeners, routes, clusters, overlays, access log."""
    validate(_without_filter(yaml.safe_load(path.read_text())), tmp_path)


@pytest.mark.parametrize("path", envoy_bootstraps(), ids=lambda p: str(p.relative_to(ROOT)))
def test_envoy_config_validates(path, tmp_path, filter_ready):
    """As is, from the repository root (where the relative wasm path points): Envoy loads the
    module and runs its on_configure on the plugin configuration."""
    if filter_ready:
        pytest.skip(filter_ready)
    validate(path, tmp_path)


RENDER_VARIANTS = {
    "ephemeral": {},
    "overlays": {"route_overlays": [("t1", {"ttl_seconds": 5}), ("off", None)]},
    "config": {"filter_config": {**stacklib.default_plugin_config(), "score_threshold": 0.1,
                                 "ttl_seconds": 10}},
    "real_upstream": {"upstream": stacklib.parse_upstream_url("https://api.openai.com"),
                      "upstream_key": "sk-test-not-a-key"},
    "azure_upstream": {"upstream": stacklib.parse_upstream_url("https://example.openai.azure.com/base"),
                       "upstream_key": "k", "upstream_auth_header": "api-key"},
    "plain_http_upstream": {"upstream": stacklib.parse_upstream_url("http://localhost:11434")},
}


@pytest.mark.parametrize("variant", RENDER_VARIANTS)
def test_rendered_config_validates(variant, tmp_path, filter_ready):
    """The configs the launcher renders (tests, make run, a real upstream) are valid Envoy."""
    options = dict(RENDER_VARIANTS[variant])
    cfg = render_envoy_config(
        listener_port=0, admin_port=0, llm=("127.0.0.1", 1), embeddings=("127.0.0.1", 2),
        bridge=("127.0.0.1", 3), wasm_path=None if filter_ready else paths.path("wasm"),
        access_log_path=str(tmp_path / "access.log"), **options)
    validate(cfg, tmp_path)
    text = json.dumps(cfg)
    if "upstream" in options:
        llm = next(c for c in cfg["static_resources"]["clusters"] if c["name"] == "llm_upstream")
        assert llm["type"] == "LOGICAL_DNS"
        host = options["upstream"]["host"]
        assert (llm.get("transport_socket", {}).get("typed_config", {}).get("sni") == host) \
            == options["upstream"]["tls"]
        if options.get("upstream_key"):
            assert options["upstream_key"] in text  # only in the rendered copy, never in the repo
    assert "sk-test-not-a-key" not in (ROOT / "envoy" / "envoy.yaml").read_text()


# -- docker-compose ---------------------------------------------------------------------------


def compose_config() -> dict:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (make test installs Debian's package as root: "
                    "apt-get install docker-compose)")
    env = {"PATH": "/usr/bin:/bin", "SEMCACHE_BRIDGE_TOKEN": "test-token"}
    r = subprocess.run([exe, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([exe, "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)


def _volumes(service: dict) -> dict[str, str]:
    """target -> source of a service's bind mounts (short or long syntax)."""
    out = {}
    for v in service.get("volumes", []):
        if isinstance(v, str):
            src, dst = v.split(":")[:2]
        else:
            src, dst = v["source"], v["target"]
        out[dst] = src
    return out


def test_compose_file_is_valid_and_uses_the_tested_envoy_config():
    cfg = compose_config()
    services = cfg["services"]
    assert {"envoy", "redis", "bridge", "embedder", "mock-llm"} <= set(services)
    envoy = services["envoy"]
    assert envoy["image"].startswith("envoyproxy/envoy:v1.40")
    vols = _volumes(envoy)
    command = envoy["command"]
    config_target = command[command.index("-c") + 1]
    # The config Envoy reads in the container is envoy/envoy.yaml of the repository, unchanged.
    assert Path(vols[config_target]).resolve() == (ROOT / "envoy" / "envoy.yaml").resolve()
    # The wasm is mounted where that config's relative filename points from the working dir.
    canonical = yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text())
    wasm_rel = stacklib._wasm_filter(canonical)["typed_config"]["config"]["vm_config"]["code"][
        "local"]["filename"]
    wasm_target = str(Path(envoy["working_dir"]) / wasm_rel)
    assert Path(vols[wasm_target]).resolve() == paths.path("wasm").resolve()
    # Every service on the host network, listening where envoy.yaml's clusters point.
    for name, svc in services.items():
        assert svc.get("network_mode") == "host", name
    clusters = {c["name"]: stacklib._socket_address(c) for c in canonical["static_resources"]["clusters"]}
    for cluster, service in (("semcache_bridge", "bridge"), ("semcache_embeddings", "embedder"),
                             ("llm_upstream", "mock-llm")):
        addr = clusters[cluster]
        listen = services[service]["command"]
        assert listen[listen.index("--listen") + 1] == f"{addr['address']}:{addr['port_value']}"
    redis_cmd = services["redis"]["command"]
    assert services["redis"]["image"] == "redis:8"
    assert redis_cmd[redis_cmd.index("--port") + 1] == "6380"
    assert "redis://127.0.0.1:6380" in services["bridge"]["environment"]["SEMCACHE_BRIDGE_REDIS_URL"]
    # The bridge and the filter get the same token.
    assert envoy["environment"]["SEMCACHE_BRIDGE_TOKEN"] == services["bridge"]["environment"]["SEMCACHE_BRIDGE_TOKEN"]
    # The project's images are built from Dockerfiles that build the right binary.
    for service in ("bridge", "embedder", "mock-llm"):
        build = services[service]["build"]
        dockerfile = Path(build["context"]) / build["dockerfile"]
        text = dockerfile.read_text()
        assert f"--bin semcache-{service}" in text and f'ENTRYPOINT ["/usr/local/bin/semcache-{service}"]' in text


# -- plugin configurations (Istio, compose, envoy.yaml) ---------------------------------------

CHECK_CONFIG_SRC = ROOT / "crates" / "core" / "examples" / "check_config.rs"


@pytest.fixture(scope="session")
def check_config():
    """Run the filter's own config parser (crates/core/examples/check_config.rs) on a config
    string; returns the CompletedProcess."""
    if not CHECK_CONFIG_SRC.exists():
        pytest.skip("pending: crates/core/examples/check_config.rs (the filter's config checker) "
                    "does not exist yet")
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("cargo not on PATH")
    # The same cargo invocation as `make build` (a no-op after it): building only this
    # example would resolve features differently and recompile shared dependencies.
    r = subprocess.run([cargo, "build", "--release", "-q", "--workspace", "--lib", "--bins",
                        "--tests", "--examples"], cwd=ROOT, capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stderr
    exe = paths.path("target") / "release" / "examples" / "check_config"

    def run(text: str, tmp: Path, overlay: str | None = None) -> subprocess.CompletedProcess:
        suffix = ".xml" if text.lstrip().startswith("<") else ".json"
        f = tmp / f"config{suffix}"
        f.write_text(text)
        argv = [str(exe), str(f)] + (["--overlay", overlay] if overlay is not None else [])
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    return run


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def plugin_configs() -> dict[str, tuple[str, str | None]]:
    """Every plugin configuration the deployment files carry, as the string the filter gets,
    with the route overlay applied over it, if any."""
    out = {}
    canonical = yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text())
    base = stacklib._wasm_filter(canonical)["typed_config"]["config"]["configuration"]["value"]
    out["envoy.yaml (also docker-compose)"] = (base, None)
    for r in stacklib._hcm(canonical)["route_config"]["virtual_hosts"][0]["routes"]:
        overlay = r.get("metadata", {}).get("filter_metadata", {}).get("semcache", {}).get("config")
        if overlay:
            out[f"envoy.yaml route {r['name']} overlay"] = (base, overlay)
    istio_base = None
    for path in sorted(ISTIO.glob("*.yaml")):
        for doc in _docs(path):
            name = f"istio/{path.name} {doc['kind']}/{doc['metadata']['name']}"
            if doc["kind"] == "WasmPlugin":
                out[name] = (json.dumps(doc["spec"]["pluginConfig"]), None)
            if doc["kind"] == "EnvoyFilter":
                for i, patch in enumerate(doc["spec"]["configPatches"]):
                    value = patch["patch"]["value"]
                    cfg = value.get("typed_config", {}).get("config", {}).get("configuration", {})
                    if cfg.get("value"):
                        out[f"{name} patch {i}"] = (cfg["value"], None)
                        istio_base = cfg["value"]
    for path in sorted(ISTIO.glob("*.yaml")):
        for doc in _docs(path):
            if doc["kind"] != "EnvoyFilter":
                continue
            for i, patch in enumerate(doc["spec"]["configPatches"]):
                meta = patch["patch"]["value"].get("metadata", {})
                overlay = meta.get("filter_metadata", {}).get("semcache", {}).get("config")
                if overlay:
                    assert istio_base, "an Istio route overlay needs the EnvoyFilter plugin config"
                    out[f"istio/{path.name} {doc['metadata']['name']} patch {i} overlay"] = \
                        (istio_base, overlay)
    return out


def test_deployment_files_carry_plugin_configs():
    names = " ".join(plugin_configs())
    for expected in ("WasmPlugin/semcache", "EnvoyFilter/semcache patch", "semcache-routes",
                     "route strict_chat overlay", "envoy.yaml (also docker-compose)"):
        assert expected in names, names


@pytest.mark.parametrize("name", list(plugin_configs()))
def test_plugin_config_is_accepted(name, check_config, tmp_path):
    config, overlay = plugin_configs()[name]
    r = check_config(config, tmp_path, overlay)
    assert r.returncode == 0, f"{name} rejected:\n{r.stdout}{r.stderr}"


def test_config_checker_rejects_a_bad_field(check_config, tmp_path):
    """Control: the checker is not a no-op, and it names the field."""
    base, _ = plugin_configs()["envoy.yaml (also docker-compose)"]
    bad = dict(json.loads(base), ttl_secondz=5)
    r = check_config(json.dumps(bad), tmp_path)
    assert r.returncode != 0
    assert "ttl_secondz" in r.stdout + r.stderr
    r = check_config(base, tmp_path, overlay='{"score_threshold": "strict"}')
    assert r.returncode != 0
    assert "score_threshold" in r.stdout + r.stderr


def test_istio_plugin_configs_differ_from_local_only_in_endpoints():
    """The Istio manifests carry the same plugin settings as envoy.yaml; only the callout
    clusters and authorities (Istio's outbound|port||fqdn names) differ."""
    configs = plugin_configs()
    local = json.loads(configs["envoy.yaml (also docker-compose)"][0])

    def strip(c):
        c = copy.deepcopy(c)
        for section in ("embeddings", "bridge"):
            c[section].pop("cluster")
            c[section].pop("authority")
        # Needs allow_on_headers_stop_iteration in Envoy's PluginConfig, which the WasmPlugin
        # CRD cannot set: the only setting allowed to differ.
        c.pop("hold_request_headers", None)
        return c

    istio = {k: json.loads(v) for k, (v, overlay) in configs.items()
             if k.startswith("istio/") and overlay is None}
    assert len(istio) == 2, list(istio)
    for name, cfg in istio.items():
        assert strip(cfg) == strip(local), name
        assert cfg["bridge"]["cluster"].startswith("outbound|8081||semcache-bridge."), name
        assert cfg["embeddings"]["cluster"].startswith("outbound|8082||semcache-embedder."), name


def test_istio_envoyfilter_entries_validate_in_envoy(tmp_path, filter_ready):
    """The EnvoyFilter's HTTP filter entry and route patches, spliced into envoy.yaml, are valid
    Envoy config (the wasm filename pointed at the built module)."""
    cfg = yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text())
    hcm = stacklib._hcm(cfg)
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    spliced = 0
    for path in sorted(ISTIO.glob("*.yaml")):
        for doc in _docs(path):
            if doc["kind"] != "EnvoyFilter":
                continue
            for patch in doc["spec"]["configPatches"]:
                value = copy.deepcopy(patch["patch"]["value"])
                if patch["applyTo"] == "HTTP_FILTER":
                    value["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = \
                        str(paths.path("wasm"))
                    hcm["http_filters"] = [f for f in hcm["http_filters"]
                                           if f["name"] != value["name"]]
                    hcm["http_filters"].insert(0, value)
                    spliced += 1
                elif patch["applyTo"] == "HTTP_ROUTE":
                    route = {"name": patch["match"]["routeConfiguration"]["vhost"]["route"]["name"],
                             "match": {"prefix": f"/istio-{spliced}/"},
                             "route": {"cluster": "llm_upstream"}}
                    route.update(value)
                    routes.insert(0, route)
                    spliced += 1
    assert spliced == 3
    for cluster in ("outbound|8081||semcache-bridge.semcache.svc.cluster.local",
                    "outbound|8082||semcache-embedder.semcache.svc.cluster.local"):
        cfg["static_resources"]["clusters"].append({
            "name": cluster, "type": "STATIC", "load_assignment": {"cluster_name": cluster}})
    if filter_ready:
        cfg = _without_filter(cfg)
    validate(cfg, tmp_path)
