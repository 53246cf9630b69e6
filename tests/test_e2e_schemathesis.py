"""schemathesis against the OpenAPI description: no generated request gets a server error.

schemathesis runs from an environment of its own (`make schemathesis`,
.venv-schemathesis), because its dependencies clash with Rasa's pins. It
gets a stack of its own too: its failed staff sign-ins would otherwise use
up the sign-in limit of the address other tests sign in from.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import ROOT, Stack

pytestmark = pytest.mark.e2e
SCHEMATHESIS = ROOT / ".venv-schemathesis" / "bin" / "schemathesis"


def test_no_generated_request_gets_a_server_error(trained_model, tmp_path):
    if not SCHEMATHESIS.exists():
        if os.environ.get("REQUIRE_SCHEMATHESIS"):
            pytest.fail("REQUIRE_SCHEMATHESIS is set but .venv-schemathesis is missing (make schemathesis)")
        pytest.skip("schemathesis is not installed (make schemathesis)")
    stack = Stack(tmp_path / "var")
    stack.start()
    try:
        result = subprocess.run(
            [
                str(SCHEMATHESIS),
                "run",
                f"{stack.web_url}/api/openapi.json",
                f"--base-url={stack.web_url}",
                "--checks=not_a_server_error",
                "--hypothesis-max-examples=40",
                "--hypothesis-derandomize",
                "--request-timeout=20000",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        exported = stack.cli("referrals", "export", "--format", "jsonl")
    finally:
        stack.stop()
    print(result.stdout[-2000:])  # the summary: operations run, examples, checks
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout  # it really ran operations, not an empty schema
    assert exported.returncode == 0  # the store still reads after it
