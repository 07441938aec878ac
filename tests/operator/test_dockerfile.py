"""Dockerfile.operator keeps its promises (read statically: CI machines may have no Docker daemon)."""
import re

from tests.support.kube import REPO_ROOT

DOCKERFILE = (REPO_ROOT / "Dockerfile.operator").read_text()
SERVICE_DOCKERFILE = (REPO_ROOT / "Dockerfile.service").read_text()


def test_multi_stage_on_the_services_pinned_base():
    bases = re.findall(r"^FROM (\S+)", DOCKERFILE, flags=re.M)
    assert len(bases) == 2 and len(set(bases)) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", bases[0])
    assert set(bases) == set(re.findall(r"^FROM (\S+)", SERVICE_DOCKERFILE, flags=re.M))
    runtime = DOCKERFILE.split("\nFROM ", 2)[2]
    assert [line for line in runtime.splitlines() if line.startswith("COPY")] == ["COPY --from=build /opt/venv /opt/venv"]


def test_runs_the_operator_as_non_root():
    users = re.findall(r"^USER (\S+)", DOCKERFILE, flags=re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert 'ENTRYPOINT ["adminapi-operator"]' in DOCKERFILE
