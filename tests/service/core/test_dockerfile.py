"""Dockerfile.service keeps its promises (read statically here; its stages, base and layers are checked
with the operator's in tests/operator/test_dockerfile.py, and `make images` builds it for real), and the
wheel it installs (a regular, non-editable install) carries the migrations."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = (REPO_ROOT / "Dockerfile.service").read_text()
INSTRUCTIONS = [line for line in DOCKERFILE.splitlines() if line and not line.startswith("#")]


def test_runs_as_a_non_root_user():
    users = [line.split()[1] for line in INSTRUCTIONS if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}


def test_healthcheck_uses_python_on_liveness():
    healthcheck = DOCKERFILE[DOCKERFILE.index("HEALTHCHECK") :].split("\n\n", 1)[0]
    assert "/health/live" in healthcheck
    assert '"python"' in healthcheck
    assert "curl" not in healthcheck


def test_serves_on_the_guide_port():
    assert "EXPOSE 8001" in INSTRUCTIONS
    assert 'ENTRYPOINT ["admin-api"]' in INSTRUCTIONS
    assert 'CMD ["serve"]' in INSTRUCTIONS


def test_the_wheel_carries_the_migrations(tmp_path):
    # Build from what the Dockerfile copies into its build stage, and nothing else.
    source = tmp_path / "src"
    shutil.copytree(REPO_ROOT / "service", source / "service", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        if (REPO_ROOT / name).exists():
            shutil.copy(REPO_ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("admin_api-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "admin_api/migrations/env.py",
        "admin_api/migrations/script.py.mako",
        "admin_api/migrations/versions/0001_initial_schema.py",
        "admin_api/cli.py",
    } <= names
