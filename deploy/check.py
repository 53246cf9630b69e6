"""Static checks of the deployment files (`make deploy-check`).

Containers cannot run where the tests run, so each deployed form is checked
by the tool that knows its format, offline:

  dockerfile  hadolint at --failure-threshold warning; and the last USER is
              not root (hadolint says nothing when there is no USER at all)
  k8s         `kubectl kustomize deploy/k8s`, then every rendered object with
              kubernetes-validate --strict against Kubernetes K8S_VERSION
              (unknown fields and wrong types fail)
  compose     compose.yaml against the Compose Specification's JSON schema
              (check-jsonschema's own copy, --builtin-schema vendor.compose-spec),
              and every service, network and volume it names exists
  systemd     `systemd-analyze verify` on each unit, in a scratch root holding
              the host's own units and a stand-in for each program the units run
              (INSTALLED: what an installed host has); any message fails
  haproxy     `haproxy -c` on deploy/haproxy/haproxy.cfg, with example values
              for the variables it reads, and on deploy/k8s/haproxy.cfg; a
              warning fails too (but one about this machine's nameservers)

Run it with .venv-deploy's Python (its bin/ holds hadolint, kubernetes-validate
and check-jsonschema; kubectl, systemd-analyze and haproxy come from PATH):

  .venv-deploy/bin/python deploy/check.py [--root DIR] [--only CHECK ...]

--root checks a copy of the repository's layout (tests/test_deploy.py breaks
copies to prove each check fails). A missing tool is a skip, said as such,
unless REQUIRE_DEPLOY_TOOLS=1 (CI), where it is a failure. Exit 0 when
nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.32.0"  # kubectl here is v1.32; kubernetes-validate 1.37.0 has schemas up to 1.37
INSTALL = "/opt/referral-assistant"
# The programs an installed host has (README "Containers, systemd and Kubernetes"): the
# units may run these and no others, so a misspelt path in ExecStart= fails.
INSTALLED = (f"{INSTALL}/.venv/bin/python", "/usr/sbin/haproxy", "/bin/sh", "/bin/kill")
# What `referral-assistant run` gives deploy/haproxy/haproxy.cfg (bot/haproxy.py environment).
HAPROXY_ENV = {
    "HAPROXY_BIND": "127.0.0.1:5005",
    "HAPROXY_STATS_BIND": "127.0.0.1:8404",
    "RASA_UPSTREAM_1": "127.0.0.1:5006",
    "RASA_UPSTREAM_2": "127.0.0.1:5007",
    "RASA_MAXCONN": "8",
}
# A warning about this machine, not the file: deploy/k8s/haproxy.cfg reads the
# nameservers from /etc/resolv.conf (parse-resolv-conf), and where none can be
# reached (no network at all) HAProxy warns. Every other warning fails.
HOST_WARNINGS = ("can't connect socket for nameserver",)
CHECKS = ("dockerfile", "k8s", "compose", "systemd", "haproxy")


class Skip(Exception):
    """A tool is missing: a skip, or a failure with REQUIRE_DEPLOY_TOOLS=1."""


class Failed(Exception):
    """The files did not pass; the message says why."""


def tool(name: str) -> str:
    """A checker from this Python's bin/ (.venv-deploy), else from PATH or /usr/sbin."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None and Path("/usr/sbin", name).exists():
        found = f"/usr/sbin/{name}"
    if found is None:
        raise Skip(f"{name} is not installed (make deploy-check installs the Python tools into .venv-deploy)")
    return found


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)


def output(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr).strip()


# ------------------------------------------------------------------ Dockerfile


def check_dockerfile(root: Path) -> str:
    dockerfile = root / "Dockerfile"
    result = run([tool("hadolint"), "--no-color", "--failure-threshold", "warning", str(dockerfile)])
    if result.returncode != 0:
        raise Failed(f"hadolint:\n{output(result)}")
    users = re.findall(r"(?im)^\s*USER\s+(\S+)", dockerfile.read_text(encoding="utf-8"))
    if not users:
        raise Failed("Dockerfile: no USER, so every process would run as root")
    if users[-1].split(":")[0] in ("root", "0"):
        raise Failed(f"Dockerfile: the last USER is {users[-1]}: the processes would run as root")
    return "hadolint: no warning; the last USER is " + users[-1]


# ------------------------------------------------------------------ Kubernetes


def render_k8s(root: Path) -> tuple[str, list[dict]]:
    """What `kubectl apply -k deploy/k8s` would send: the text, and its objects."""
    result = run([tool("kubectl"), "kustomize", str(root / "deploy" / "k8s")])
    if result.returncode != 0:
        raise Failed(f"kubectl kustomize:\n{output(result)}")
    return result.stdout, [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def check_k8s(root: Path) -> str:
    validate = tool("kubernetes-validate")
    text, objects = render_k8s(root)
    if not objects:
        raise Failed("kubectl kustomize rendered nothing")
    with tempfile.TemporaryDirectory() as scratch:
        rendered = Path(scratch) / "rendered.yaml"
        rendered.write_text(text, encoding="utf-8")
        result = run([validate, "--strict", "--quiet", "--kubernetes-version", K8S_VERSION, str(rendered)])
    if result.returncode != 0 or "ERROR" in result.stdout + result.stderr:
        raise Failed(f"kubernetes-validate --strict ({K8S_VERSION}):\n{output(result)}")
    return f"{len(objects)} objects valid for Kubernetes {K8S_VERSION} (strict)"


# ------------------------------------------------------------------ compose


def check_compose(root: Path) -> str:
    compose = root / "compose.yaml"
    result = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)])
    if result.returncode != 0:
        raise Failed(f"check-jsonschema (Compose Specification):\n{output(result)}")
    problems = compose_references(yaml.safe_load(compose.read_text(encoding="utf-8")))
    if problems:
        raise Failed("compose.yaml:\n" + "\n".join(problems))
    return "the Compose Specification's schema; every name it refers to exists"


def compose_references(document: dict) -> list[str]:
    """Names a service refers to that compose.yaml does not define (the schema cannot see these)."""
    services = document.get("services") or {}
    networks = set(document.get("networks") or {}) | {"default"}
    volumes = set(document.get("volumes") or {})
    found = []
    for name, service in services.items():
        depends = service.get("depends_on") or []
        for other in depends if isinstance(depends, list) else depends.keys():
            if other not in services:
                found.append(f"service {name} depends on {other}, which is not a service")
        attached = service.get("networks") or []
        for network in attached if isinstance(attached, list) else attached.keys():
            if network not in networks:
                found.append(f"service {name} is on network {network}, which is not defined")
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0] if isinstance(mount, str) else mount.get("source", "")
            if source and not source.startswith((".", "/", "~")) and source not in volumes:
                found.append(f"service {name} mounts volume {source}, which is not defined")
    return found


# ------------------------------------------------------------------ systemd


def check_systemd(root: Path) -> str:
    analyze = tool("systemd-analyze")
    units_dir = root / "deploy" / "systemd"
    units = sorted(p for p in units_dir.iterdir() if p.suffix in (".service", ".target"))
    if not units:
        raise Failed(f"no units in {units_dir}")
    problems = [problem for unit in units for problem in unit_paths(unit, root)]
    if problems:
        raise Failed("\n".join(problems))
    host_units = Path("/usr/lib/systemd/system")
    with tempfile.TemporaryDirectory() as scratch:
        # A root of our own: the host's units (sysinit.target and the rest),
        # ours where an installed host has them, and stand-ins for the
        # programs the units run, which this machine does not have there.
        fake = Path(scratch)
        if host_units.is_dir():
            shutil.copytree(host_units, fake / "usr/lib/systemd/system", symlinks=True)
        target = fake / "etc/systemd/system"
        target.mkdir(parents=True)
        for unit in units:
            shutil.copy(unit, target / unit.name)
        for program in INSTALLED:
            stand_in = fake / program.lstrip("/")
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.write_text("#!/bin/sh\n")
            stand_in.chmod(0o755)
        # A template is verified as one of its instances (a port, here).
        names = [u.name.replace("@.", "@5006.") for u in units]
        result = run([analyze, "verify", f"--root={fake}", "--man=no", "--generators=no", *names], cwd=target)
    # verify exits 0 on an unknown key or a value it cannot parse ("ignoring"):
    # any message at all is a failure.
    if result.returncode != 0 or output(result):
        raise Failed(f"systemd-analyze verify:\n{output(result)}")
    return f"systemd-analyze verify: {len(units)} units, no message"


def unit_paths(unit: Path, root: Path) -> list[str]:
    """Files of the install folder a unit names that the repository does not have."""
    found = []
    for match in re.finditer(re.escape(INSTALL) + r"/([^\s\"']+)", unit.read_text(encoding="utf-8")):
        relative = match.group(1)
        if relative.startswith(".venv/") or relative == "README.md":
            continue  # made at install time; README.md is only Documentation=
        if not (root / relative).exists():
            found.append(f"{unit.name}: names {INSTALL}/{relative}, which is not in the repository")
    return found


# ------------------------------------------------------------------ HAProxy


def check_haproxy(root: Path) -> str:
    haproxy = tool("haproxy")
    files = (root / "deploy" / "haproxy" / "haproxy.cfg", root / "deploy" / "k8s" / "haproxy.cfg")
    for config in files:
        result = run([haproxy, "-c", "-f", str(config)], env={**os.environ, **HAPROXY_ENV})
        warnings = [
            line
            for line in output(result).splitlines()
            if "[WARNING]" in line and not any(host in line for host in HOST_WARNINGS)
        ]
        if result.returncode != 0 or warnings:
            raise Failed(f"haproxy -c {config.relative_to(root)}:\n{output(result)}")
    return "haproxy -c, no warning: " + ", ".join(str(f.relative_to(root)) for f in files)


# ------------------------------------------------------------------ main

RUNNERS = {
    "dockerfile": check_dockerfile,
    "k8s": check_k8s,
    "compose": check_compose,
    "systemd": check_systemd,
    "haproxy": check_haproxy,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="a folder laid out as the repository")
    parser.add_argument("--only", nargs="+", choices=CHECKS, default=list(CHECKS))
    args = parser.parse_args(argv)
    require = os.environ.get("REQUIRE_DEPLOY_TOOLS") == "1"
    failed = False
    for name in args.only:
        try:
            print(f"ok    {name}: {RUNNERS[name](args.root.resolve())}", flush=True)
        except Skip as why:
            if require:
                failed = True
                print(f"FAIL  {name}: {why} (REQUIRE_DEPLOY_TOOLS=1)", flush=True)
            else:
                print(f"skip  {name}: {why}", flush=True)
        except Failed as why:
            failed = True
            print(f"FAIL  {name}: {why}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
