"""Dockerfile.operator and Dockerfile.service keep their promises (read statically here; `make images`
builds both for real with buildah, and tests/e2e runs what they build)."""
import re

import pytest

from tests.support.kube import REPO_ROOT

DOCKERFILES = {name: (REPO_ROOT / f"Dockerfile.{name}").read_text() for name in ("operator", "service")}


def _stages(text: str) -> list[str]:
    return text.split("\nFROM ")[1:]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_is_a_build_arg_defaulting_to_the_pinned_public_image(name):
    text = DOCKERFILES[name]
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11\.\d+-slim-bookworm$", text, flags=re.M)
    sources = re.findall(r"^FROM (\S+)", text, flags=re.M)
    stages = re.findall(r"^FROM \S+ AS (\S+)", text, flags=re.M)
    # every stage starts from the base or from an earlier stage: no other image is pulled
    assert sources[0] == "${BASE_IMAGE}" and sources[-1] == "${BASE_IMAGE}"
    assert set(sources) <= {"${BASE_IMAGE}", *stages}


def test_both_images_share_the_same_base_and_dependency_layer():
    def deps(text: str) -> str:
        return next(s for s in _stages(text) if s.startswith("${BASE_IMAGE} AS deps"))

    assert re.findall(r"^ARG BASE_IMAGE=\S+", DOCKERFILES["operator"], flags=re.M) == re.findall(
        r"^ARG BASE_IMAGE=\S+", DOCKERFILES["service"], flags=re.M
    )
    strip = lambda s: [line for line in deps(s).splitlines() if line.strip() and not line.startswith("#")]  # noqa: E731
    assert strip(DOCKERFILES["operator"]) == strip(DOCKERFILES["service"])


@pytest.mark.parametrize("name", DOCKERFILES)
def test_code_changes_rebuild_only_the_last_layers(name):
    # The dependencies are installed from pyproject.toml before any source is copied in.
    deps = _stages(DOCKERFILES[name])[0]
    assert [line for line in deps.splitlines() if line.startswith("COPY")] == ["COPY pyproject.toml ./"]
    runtime = _stages(DOCKERFILES[name])[-1]
    assert [line for line in runtime.splitlines() if line.startswith("COPY")] == [
        "COPY --from=deps /opt/venv /opt/venv",  # unchanged by code changes: a cached layer
        "COPY --from=build /wheels /wheels",  # our code: one small wheel
    ]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_a_proxy_ca_is_a_build_secret_never_a_layer(name):
    text = DOCKERFILES[name]
    assert "--mount=type=secret,id=pip-ca" in text
    assert not re.search(r"^(COPY|ADD)\b.*(\.crt|\.pem|ca-cert)", text, flags=re.M | re.I)


@pytest.mark.parametrize(("name", "entrypoint"), [("operator", "adminapi-operator"), ("service", "admin-api")])
def test_runs_as_non_root(name, entrypoint):
    users = re.findall(r"^USER (\S+)", DOCKERFILES[name], flags=re.M)
    assert users and users[-1] == "10001:10001"
    assert f'ENTRYPOINT ["{entrypoint}"]' in DOCKERFILES[name]
