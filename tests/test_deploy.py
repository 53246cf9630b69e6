"""The deployed forms: Dockerfile, compose.yaml, deploy/k8s, deploy/systemd, HAProxy.

deploy/check.py (make deploy-check) passes on the real files, and each of its
checks fails on a copy broken in one way, so none of them can pass by
checking nothing. The rules no checker knows are tested here: no Secret in
the repository, probes and resources on every Deployment, no root, only the
web service published, and every variable `referral-assistant run` sets for
its children (bot/runner.py process_env) set by each form in its own way.

Tests that need a checker skip when it is missing (make deploy-check makes
.venv-deploy), unless REQUIRE_DEPLOY_TOOLS=1, where that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CHECK = DEPLOY / "check.py"
DEPLOY_BIN = ROOT / ".venv-deploy" / "bin"
REQUIRED = os.environ.get("REQUIRE_DEPLOY_TOOLS") == "1"
# In the Secret referral-secrets (deploy/k8s/config.yaml), never in a file of the repository.
SECRET_KEYS = {
    "SESSION_SECRET",
    "PERSON_KEY_SECRET",
    "GATEWAY_TOKEN",
    "ACTION_SERVER_TOKEN",
    "REFERRAL_ENCRYPTION_KEYS",
    "DATABASE_PASSWORD",
    "REDIS_PASSWORD",
}
# Which tools each check of deploy/check.py runs.
TOOLS = {
    "dockerfile": ("hadolint",),
    "k8s": ("kubectl", "kubernetes-validate"),
    "compose": ("check-jsonschema",),
    "systemd": ("systemd-analyze",),
    "haproxy": ("haproxy",),
}


def _found(name: str) -> bool:
    return (DEPLOY_BIN / name).exists() or shutil.which(name) is not None or Path("/usr/sbin", name).exists()


def need(*names: str) -> None:
    missing = [n for n in names if not _found(n)]
    if not (DEPLOY_BIN / "python").exists():
        missing.insert(0, ".venv-deploy (make deploy-check)")
    if missing:
        message = f"deployment checker missing: {', '.join(missing)}"
        if REQUIRED:
            pytest.fail(f"{message} (REQUIRE_DEPLOY_TOOLS=1)")
        pytest.skip(message)


def run_check(root: Path, *checks: str) -> subprocess.CompletedProcess:
    # REQUIRE_DEPLOY_TOOLS=1: a check whose tool vanished fails instead of passing as a skip.
    return subprocess.run(
        [str(DEPLOY_BIN / "python"), str(CHECK), "--root", str(root), "--only", *checks],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "REQUIRE_DEPLOY_TOOLS": "1"},
    )


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """A copy of the deployment files, laid out as the repository."""
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    shutil.copy(ROOT / "compose.yaml", tmp_path / "compose.yaml")
    shutil.copytree(
        DEPLOY, tmp_path / "deploy", ignore=shutil.ignore_patterns("production.env", "__pycache__")
    )
    return tmp_path


def break_file(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path.name} no longer has {old!r}: update this test"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# ------------------------------------------------------------ the checks themselves


def test_every_check_passes_on_the_real_files():
    need(*(tool for tools in TOOLS.values() for tool in tools))
    result = run_check(ROOT, *TOOLS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["ok"] * len(TOOLS)


BROKEN = [
    # (check, file, what is there, what it becomes, what the failure must say)
    ("dockerfile", "Dockerfile", "FROM python:3.10.18-slim-bookworm", "FROM python:latest", "DL3007"),
    ("dockerfile", "Dockerfile", "USER 10001:10001", "USER root", "DL3002"),
    ("dockerfile", "Dockerfile", "USER 10001:10001", "", "no USER"),
    (
        "k8s",
        "deploy/k8s/web.yaml",
        "      automountServiceAccountToken: false\n",
        "      automountServiceAccountToken: false\n      hostNetworking: true\n",
        "'hostNetworking' was unexpected",
    ),
    (
        "k8s",
        "deploy/k8s/rasa.yaml",
        "  replicas: 2\n",
        '  replicas: "two"\n',
        "'two' is not of type 'integer'",
    ),
    ("k8s", "deploy/k8s/kustomization.yaml", "  - web.yaml\n", "  - webb.yaml\n", "kubectl kustomize"),
    (
        "compose",
        "compose.yaml",
        "  web:\n",
        "  web:\n    restart_policy: always\n",
        "'restart_policy' was unexpected",
    ),
    (
        "compose",
        "compose.yaml",
        "      haproxy:\n        condition: service_started",
        "      haproxi:\n        condition: service_started",
        "haproxi, which is not a service",
    ),
    (
        "systemd",
        "deploy/systemd/referral-web.service",
        "Restart=on-failure",
        "Restart=on-failure\nRestrat=always",
        "Unknown key 'Restrat'",
    ),
    (
        "systemd",
        "deploy/systemd/referral-actions.service",
        "ProtectSystem=strict",
        "ProtectSystem=strictest",
        "Failed to parse",
    ),
    (
        "systemd",
        "deploy/systemd/referral-rasa@.service",
        ".venv/bin/python -m",
        ".venv/bin/pyhton -m",
        "not executable",
    ),
    (
        "systemd",
        "deploy/systemd/referral-migrate.service",
        "/opt/referral-assistant/deploy/migrate.sh",
        "/opt/referral-assistant/deploy/migrations.sh",
        "not in the repository",
    ),
    ("haproxy", "deploy/haproxy/haproxy.cfg", "    balance hdr(", "    balanse hdr(", "balanse"),
    ("haproxy", "deploy/haproxy/haproxy.cfg", "    timeout client 15s\n", "", "missing timeouts"),
    (
        "haproxy",
        "deploy/k8s/haproxy.cfg",
        "    server-template rasa 10",
        "    server-templat rasa 10",
        "server-templat",
    ),
]


@pytest.mark.parametrize(
    ("check", "relative", "old", "new", "said"), BROKEN, ids=[f"{b[0]}-{b[4][:24]}" for b in BROKEN]
)
def test_each_check_fails_on_a_broken_copy(layout, check, relative, old, new, said):
    need(*TOOLS[check])
    assert run_check(layout, check).returncode == 0, "the unbroken copy must pass first"
    break_file(layout / relative, old, new)
    result = run_check(layout, check)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAIL  {check}:" in result.stdout
    assert said in result.stdout, result.stdout


def test_a_missing_tool_is_a_skip_or_with_require_a_failure(tmp_path):
    need("systemd-analyze")
    if Path("/usr/sbin/systemd-analyze").exists():
        pytest.skip("check.py also looks in /usr/sbin, so an empty PATH does not hide systemd-analyze")
    argv = [str(DEPLOY_BIN / "python"), str(CHECK), "--only", "systemd"]
    env = {k: v for k, v in os.environ.items() if k != "REQUIRE_DEPLOY_TOOLS"} | {"PATH": str(tmp_path)}
    skipped = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert skipped.returncode == 0 and skipped.stdout.startswith("skip  systemd:"), skipped.stdout
    required = subprocess.run(argv, capture_output=True, text=True, env=env | {"REQUIRE_DEPLOY_TOOLS": "1"})
    assert required.returncode == 1 and "REQUIRE_DEPLOY_TOOLS=1" in required.stdout, required.stdout


# ------------------------------------------------------------ Kubernetes


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    need("kubectl")
    kubectl = shutil.which("kubectl")
    result = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s")], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _pods(objects: list[dict]) -> list[tuple[str, dict]]:
    return [
        (f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "Job")
    ]


def _containers(objects: list[dict]) -> list[tuple[str, dict]]:
    return [(f"{name}/{c['name']}", c) for name, pod in _pods(objects) for c in pod["containers"]]


def test_k8s_has_every_process_and_no_secret(rendered):
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    for name in ("web", "rasa", "actions", "haproxy"):
        assert ("Deployment", name) in kinds and ("Service", name) in kinds
    assert ("Service", "rasa-headless") in kinds and ("Job", "referral-migrate") in kinds
    assert not [o for o in rendered if o["kind"] == "Secret"]
    assert {o["metadata"].get("namespace") for o in rendered if o["kind"] != "Namespace"} == {"referral"}


def test_k8s_secrets_come_only_from_the_secret(rendered):
    config = next(
        o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "referral-config"
    )
    assert not SECRET_KEYS & set(config["data"])
    assert not [k for k in config["data"] if re.search("PASSWORD|SECRET|TOKEN|KEYS", k)]
    for name, container in _containers(rendered):
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                assert source["secretRef"]["name"] == "referral-secrets", name
        for variable in container.get("env", []):
            if variable["name"] in SECRET_KEYS:
                assert variable["valueFrom"]["secretKeyRef"]["name"] == "referral-secrets", name
            elif variable["name"] in ("DATABASE_URL", "TRACKER_URL"):
                # The password only by reference to the Secret's DATABASE_PASSWORD.
                assert re.fullmatch(
                    r"postgresql://\$\(DATABASE_USER\):\$\(DATABASE_PASSWORD\)@\$\(DATABASE_HOST\):"
                    r"\$\(DATABASE_PORT\)/\$\((REFERRALS|CONVERSATIONS)_DATABASE\)\?sslmode=\$\(DATABASE_SSLMODE\)",
                    variable["value"],
                ), name
            else:
                assert not re.search("PASSWORD|SECRET|TOKEN", variable["name"]), name


def test_k8s_every_deployment_has_probes_and_resources(rendered):
    deployments = [o for o in rendered if o["kind"] == "Deployment"]
    assert len(deployments) == 4
    for name, container in _containers(deployments):
        assert "readinessProbe" in container and "livenessProbe" in container, name
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name} {bound}"
    rasa = next(o for o in deployments if o["metadata"]["name"] == "rasa")
    assert rasa["spec"]["replicas"] == 2
    container = rasa["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/webhooks/gateway/"
    hpa = next(o for o in rendered if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rasa"}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # HAProxy's server-template has a slot for every replica the autoscaler may make.
    slots = re.search(r"server-template rasa (\d+) ", (DEPLOY / "k8s" / "haproxy.cfg").read_text())
    assert int(slots.group(1)) >= hpa["spec"]["maxReplicas"]


def test_k8s_pods_run_unprivileged(rendered):
    for name, pod in _pods(rendered):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["automountServiceAccountToken"] is False, name
        # Service links would set RASA_PORT=tcp://..., which bot/config.py reads as a port.
        assert pod["enableServiceLinks"] is False, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "/tmp" in {m["mountPath"] for m in container.get("volumeMounts", [])}, name


def test_k8s_the_image_can_be_overridden():
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert "referral-assistant" in {image["name"] for image in kustomization["images"]}
    for manifest in (DEPLOY / "k8s").glob("*.yaml"):
        for image in re.findall(r"image: (\S+)", manifest.read_text()):
            assert image in ("referral-assistant", "haproxy:2.6"), f"{manifest.name}: {image}"


# ------------------------------------------------------------ Dockerfile and compose


def test_the_image_runs_as_a_user_that_is_not_root():
    users = re.findall(r"(?m)^USER\s+(\S+)", (ROOT / "Dockerfile").read_text())
    assert users and users[-1].split(":")[0] not in ("root", "0")
    uid = int(users[-1].split(":")[0])
    for manifest in ("web.yaml", "rasa.yaml", "actions.yaml", "migrate-job.yaml"):
        assert f"runAsUser: {uid}" in (DEPLOY / "k8s" / manifest).read_text(), manifest


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_publishes_only_web_and_migrates_first(compose):
    services = compose["services"]
    assert {"web", "rasa-1", "rasa-2", "actions", "haproxy", "postgres", "redis", "migrate"} <= set(services)
    assert [name for name, s in services.items() if s.get("ports")] == ["web"]
    for name in ("web", "rasa-1", "rasa-2", "actions"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert services["haproxy"]["image"] == "haproxy:2.6"
    assert services["haproxy"]["environment"]["RASA_UPSTREAM_1"] == "rasa-1:5005"


def test_compose_commits_no_secret(compose):
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search("PASSWORD|SECRET|TOKEN|KEYS", key):
                assert str(value).startswith("${"), f"{name}: {key} must come from the env file"
        if "env_file" in service:
            assert service["env_file"] == "deploy/production.env"
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/production.env"], cwd=ROOT)
    assert ignored.returncode == 0, "deploy/production.env must be ignored by git"


def test_the_env_example_has_every_secret_and_no_value_for_any():
    text = (DEPLOY / "production.env.example").read_text()
    assigned = dict(re.findall(r"(?m)^([A-Z][A-Z0-9_]*)=(.*)$", text))
    for name in SECRET_KEYS - {"DATABASE_PASSWORD"} | {"DATABASE_URL", "TRACKER_URL", "POSTGRES_PASSWORD"}:
        assert assigned.get(name) == "", f"{name} must be there, empty"


# ------------------------------------------------------------ what the runner would have set


@pytest.fixture(scope="module")
def runner_sets(tmp_path_factory) -> set[str]:
    """The variables `referral-assistant run` sets for its children in the production profile."""
    from cryptography.fernet import Fernet

    from bot import runner
    from bot.config import Settings

    env = {name: "x" for name in SECRET_KEYS}
    env |= {
        "REFERRAL_PROFILE": "production",
        "RASA_INSTANCES": "2",
        "REFERRAL_VAR_DIR": str(tmp_path_factory.mktemp("var")),
        "REFERRAL_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": "postgresql://referrals@db.internal/referrals",
        "TRACKER_URL": "postgresql://referrals@db.internal/conversations",
    }
    return set(runner.process_env(Settings.from_env(env), env))


# Only the runner needs these: SQLite's file, the port it gives HAProxy, and
# the ports of the servers it forks on one host (empty where deployed: one a process).
NOT_DEPLOYED = {"TRACKER_DB", "RASA_PORT", "RASA_FORK_PORTS"}
HAPROXY_VARIABLES = {
    "HAPROXY_BIND",
    "HAPROXY_STATS_BIND",
    "RASA_MAXCONN",
    "RASA_UPSTREAM_1",
    "RASA_UPSTREAM_2",
}


def _env_example() -> set[str]:
    return set(re.findall(r"(?m)^([A-Z][A-Z0-9_]*)=", (DEPLOY / "production.env.example").read_text()))


def test_systemd_sets_what_the_runner_would(runner_sets):
    units = (DEPLOY / "systemd").glob("*.service")
    given = {
        name
        for unit in units
        for line in re.findall(r"(?m)^Environment=(.*)$", unit.read_text())
        for name in re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]*)=", line)
    }
    missing = runner_sets - NOT_DEPLOYED - given - _env_example()
    assert not missing, f"no unit or production.env sets {sorted(missing)}"


def test_compose_sets_what_the_runner_would(runner_sets, compose):
    image = set(re.findall(r"(?m)^(?:ENV)?\s+([A-Z][A-Z0-9_]*)=", (ROOT / "Dockerfile").read_text()))
    services = {name for s in compose["services"].values() for name in (s.get("environment") or {})}
    missing = runner_sets - NOT_DEPLOYED - image - services - _env_example()
    assert not missing, f"compose.yaml does not set {sorted(missing)}"


def test_k8s_sets_what_the_runner_would(runner_sets, rendered):
    config = next(
        o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "referral-config"
    )
    for name, container in _containers(rendered):
        if name.startswith("Deployment/haproxy"):
            continue  # deploy/k8s/haproxy.cfg names its addresses itself
        given = set(config["data"]) | SECRET_KEYS | {v["name"] for v in container.get("env", [])}
        assert {"referral-config", "referral-secrets"} <= {
            (s.get("configMapRef") or s.get("secretRef"))["name"] for s in container["envFrom"]
        }, name
        missing = runner_sets - NOT_DEPLOYED - HAPROXY_VARIABLES - given
        assert not missing, f"{name} lacks {sorted(missing)}"


def test_systemd_units_are_hardened_and_restart():
    services = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {p.name for p in services} == {
        "referral-web.service",
        "referral-actions.service",
        "referral-rasa@.service",
        "referral-haproxy.service",
        "referral-migrate.service",
    }
    for unit in services:
        text = unit.read_text()
        for line in (
            "Restart=on-failure",
            "User=referral",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "StandardOutput=journal",
        ):
            assert re.search(f"(?m)^{re.escape(line)}$", text), f"{unit.name}: {line}"
        assert re.search(r"(?m)^RestartSec=\d+s$", text), unit.name
        if unit.name != "referral-haproxy.service":  # HAProxy needs no secret
            assert "EnvironmentFile=/etc/referral-assistant/production.env" in text, unit.name
            assert "LOG_FORMAT=json" in text, unit.name
            assert "ReadWritePaths=/var/lib/referral-assistant" in text, unit.name
        if unit.name not in ("referral-migrate.service", "referral-haproxy.service"):
            assert "Requires=referral-migrate.service" in text and "After=referral-migrate.service" in text
    target = (DEPLOY / "systemd" / "referral.target").read_text()
    for wanted in ("referral-rasa@5006.service", "referral-rasa@5007.service", "referral-migrate.service"):
        assert wanted in target
