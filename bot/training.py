"""Train the Rasa model only when its inputs changed.

The model file is named after a fingerprint of everything training reads
(config, domain, NLU data, rules, stories, and the Rasa version), so an
up-to-date model is found by name and never retrained.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from bot.config import PROJECT_ROOT

TRAINING_INPUTS = ("config.yml", "domain.yml", "data")
RASA_VERSION = "3.6.21"
KEEP_MODELS = 3


def fingerprint(root: Path = PROJECT_ROOT) -> str:
    digest = hashlib.sha256(RASA_VERSION.encode())
    for name in TRAINING_INPUTS:
        path = root / name
        files = sorted(path.rglob("*.yml")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def models_dir(root: Path = PROJECT_ROOT) -> Path:
    return Path(os.environ.get("RASA_MODELS_DIR", root / "models"))


def model_path(root: Path = PROJECT_ROOT) -> Path:
    return models_dir(root) / f"referral-{fingerprint(root)}.tar.gz"


def ensure_model(force: bool = False, root: Path = PROJECT_ROOT) -> tuple[Path, bool]:
    """The current model's path, training it first if needed.

    Returns (path, trained). Raises RuntimeError with Rasa's output tail when
    training fails.
    """
    target = model_path(root)
    if target.exists() and not force:
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "rasa",
        "train",
        "--config",
        "config.yml",
        "--domain",
        "domain.yml",
        "--data",
        "data",
        "--out",
        str(target.parent),
        "--fixed-model-name",
        target.name.removesuffix(".tar.gz"),
    ]
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false"}
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    if result.returncode != 0 or not target.exists():
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise RuntimeError(f"rasa train failed (exit {result.returncode}):\n{tail}")
    _prune(target)
    return target, True


def _prune(keep: Path) -> None:
    models = sorted(keep.parent.glob("referral-*.tar.gz"), key=lambda p: p.stat().st_mtime)
    for old in models[:-KEEP_MODELS]:
        if old != keep:
            old.unlink(missing_ok=True)
