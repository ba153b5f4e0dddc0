"""docs/ stays complete: every route, every setting, the examples as run, links that resolve.

- every route of the OpenAPI document the app serves is in docs/api.md, and the schema pages the
  docs point at are served;
- every field of ``Settings`` is read from an environment variable (found in the source of
  ``Settings.from_env``), and each such variable is in .env.example and docs/configuration.md;
- docs/webhooks.md shows the receiver examples exactly as tests/test_docs_examples.py runs them;
- links in the README, docs/ and deploy/README.md resolve inside the repository, and the README
  leaves it only for public standards and libraries.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from relay.api.app import create_app
from relay.settings import Settings
from tests.support.settings_reads import readers_in
from tests.test_deploy import FILLED_IN, env_example

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Where the README may link outside the repository: public standards and libraries.
PUBLIC_HOSTS = {
    "www.standardwebhooks.com",
    "github.com",
    "pypi.org",
    "www.npmjs.com",
    "docs.astral.sh",
    "keepachangelog.com",
    "semver.org",
}


def openapi_routes() -> set[str]:
    app = create_app(
        Settings.from_env({**FILLED_IN, "REDIS_URL": "redis://127.0.0.1:1/0"}, require_redis=True)
    )
    paths = app.openapi_schema.to_schema()["paths"]
    return {f"{method.upper()} {path}" for path, item in paths.items() for method in item}


def test_every_openapi_route_is_in_the_api_doc() -> None:
    text = (DOCS / "api.md").read_text()
    routes = openapi_routes()
    assert len(routes) >= 10
    missing = sorted(route for route in routes if route not in text)
    assert not missing, f"docs/api.md does not document {missing}"


async def test_the_schema_pages_the_docs_point_at_are_served(
    api: AsyncTestClient[Any],
) -> None:
    text = (DOCS / "api.md").read_text()
    for page in ("/schema/swagger", "/schema/redoc", "/schema/openapi.json"):
        assert page in text
        response = await api.get(page)
        assert response.status_code == 200, page


def settings_fields_to_env() -> dict[str, set[str]]:
    """Each ``Settings`` field -> the environment variables ``from_env`` reads for it."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(Settings.from_env)))
    assigned: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):  # a name, or the names of a tuple
                    if isinstance(name, ast.Name):
                        assigned.setdefault(name.id, set()).update(readers_in(node.value))
    [build] = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "cls"
    ]
    fields: dict[str, set[str]] = {}
    for keyword in build.keywords:
        assert keyword.arg is not None
        names = readers_in(keyword.value)
        for ref in ast.walk(keyword.value):
            if isinstance(ref, ast.Name):
                names |= assigned.get(ref.id, set())
        fields[keyword.arg] = names
    return fields


def test_every_settings_field_has_a_variable_in_env_example_and_the_docs() -> None:
    fields = settings_fields_to_env()
    assert set(fields) == {f.name for f in msgspec.structs.fields(Settings)}
    documented = (DOCS / "configuration.md").read_text()
    example = set(env_example())
    for field, names in fields.items():
        assert names, f"Settings.{field} is not read from any environment variable"
        for name in names:
            assert name in example, f"{name} (Settings.{field}) is missing from .env.example"
            assert f"`{name}`" in documented, f"{name} is missing from docs/configuration.md"


@pytest.mark.parametrize(
    ("example", "fence"),
    [("python/receiver.py", "python"), ("node/receiver.mjs", "javascript"), ("go/main.go", "go")],
)
def test_webhooks_doc_shows_each_example_as_it_runs(example: str, fence: str) -> None:
    code = (DOCS / "examples" / example).read_text().rstrip()
    assert f"```{fence}\n{code}\n```" in (DOCS / "webhooks.md").read_text()


def markdown_files() -> list[Path]:
    return [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        ROOT / "deploy" / "README.md",
        *sorted(DOCS.glob("*.md")),
    ]


def test_relative_links_resolve_inside_the_repository() -> None:
    for page in markdown_files():
        for target in _LINK.findall(page.read_text()):
            if urlparse(target).scheme or target.startswith("#"):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            assert path.is_relative_to(ROOT), f"{page.name}: {target} leaves the repository"
            assert path.exists(), f"{page.name}: {target} does not exist"


def test_readme_leaves_the_repository_only_for_public_standards_and_libraries() -> None:
    text = (ROOT / "README.md").read_text()
    assert "../shared" not in text
    for target in _LINK.findall(text):
        url = urlparse(target)
        if url.scheme:
            assert url.scheme == "https" and url.hostname in PUBLIC_HOSTS, target
    for doc in ("docs/api.md", "docs/webhooks.md", "docs/operations.md", "docs/fake-intuned.md"):
        assert f"]({doc})" in text, f"the README does not link {doc}"
    assert "](CHANGELOG.md)" in text
