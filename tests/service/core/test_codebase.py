"""Properties of the code itself: no dependency costs a thread hop, every direct import is declared."""

from __future__ import annotations

import ast
import inspect
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from admin_api.main import create_app
from fastapi.routing import APIRoute

from tests.service.conftest import IsolatedSettings

REPO_ROOT = Path(__file__).resolve().parents[3]
SERVICE_PACKAGE = REPO_ROOT / "service" / "admin_api"


def _app():
    # Nothing is connected before the lifespan runs: these addresses are never dialled.
    return create_app(
        IsolatedSettings(
            database_url="postgresql+asyncpg://app:pw@127.0.0.1:1/admin_db",
            redis_url="redis://127.0.0.1:1",
            llm_endpoint="http://127.0.0.1:1/v1",
            llm_model="m",
        )
    )


def _api_routes(routes):
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        else:  # an included router (FastAPI keeps it whole, with its original router) or a mount
            router = getattr(route, "original_router", route)
            yield from _api_routes(getattr(router, "routes", []))


def _dependencies(dependant):
    for dependency in dependant.dependencies:
        yield dependency
        yield from _dependencies(dependency)


def test_every_endpoint_and_dependency_is_async():
    """FastAPI runs a plain `def` endpoint or dependency in its thread pool: a thread hop per request."""
    routes = list(_api_routes(_app().routes))
    assert {route.path for route in routes} >= {"/api/v1/chat/send", "/api/v1/history/list", "/health/ready"}
    sync = set()
    for route in routes:
        for call in [route.endpoint, *(d.call for d in _dependencies(route.dependant) if d.call is not None)]:
            if not (inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)):
                sync.add(f"{route.path}: {getattr(call, '__qualname__', call)}")
    assert not sync


def _declared_distributions() -> set[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0] for requirement in project["dependencies"]]
    return {_normalized(name) for name in names}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_level_modules(package: Path) -> set[str]:
    modules = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"__future__", "admin_api"}


def test_every_library_the_service_imports_is_a_declared_dependency():
    """A library that only arrives through another one's requirements can vanish or change under us."""
    distributions = packages_distributions()
    declared = _declared_distributions()
    undeclared = {
        module
        for module in _imported_top_level_modules(SERVICE_PACKAGE)
        if not {_normalized(d) for d in distributions.get(module, [module])} & declared
    }
    assert not undeclared
