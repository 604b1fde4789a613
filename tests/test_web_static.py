"""The web client's module graph, served as a browser loads it.

The page loads ``/static/app.js`` as an ES module, which imports the rest. A
browser runs a module only when it comes with a JavaScript content type, and a
missing file or a misspelled import stops the whole client before it paints
(the browser tests would then fail on a blank page, not on the cause): these
tests follow every import from index.html without a browser and say which.
"""

from __future__ import annotations

import mimetypes
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from flask.testing import FlaskClient

from imchat.factory import create_app
from imchat.web import STATIC_DIR

pytestmark = pytest.mark.unit

MODULE_SCRIPT = re.compile(r'<script\s+type="module"\s+src="(?P<src>[^"]+)"')
# Static imports and re-exports (`import x from "..."`, `import "..."`,
# `export { y } from "..."`), across lines, and dynamic `import("...")`.
IMPORT = re.compile(
    r'^(?:import|export)\s+(?:(?P<names>[^;"\']*?)\s*from\s*)?["\'](?P<spec>[^"\']+)["\']'
    r'|\bimport\(\s*["\'](?P<dynamic>[^"\']+)["\']\s*\)',
    re.MULTILINE,
)
EXPORT = re.compile(
    r"^export\s+(?:async\s+)?(?:function\*?|class|const|let|var)\s+(?P<name>[\w$]+)", re.MULTILINE
)


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    return create_app(overrides={"data_dir": tmp_path / "var"}, environ={}).test_client()


class Served(NamedTuple):
    status: int
    mimetype: str | None
    cache_control: str | None
    text: str
    json: object


def get(client: FlaskClient, url: str) -> Served:
    """GET `url`, the response read and closed (a file left open is a ResourceWarning)."""
    with client.get(url) as response:
        text = response.get_data(as_text=True)
        json = response.get_json(silent=True)
        return Served(
            response.status_code,
            response.mimetype,
            response.headers.get("Cache-Control"),
            text,
            json,
        )


def imports_of(source: str) -> Iterator[tuple[str, set[str]]]:
    """Each import's specifier with the names it takes by name (`{a, b as c}`)."""
    for match in IMPORT.finditer(source):
        names = match["names"] or ""
        braces = re.search(r"\{(?P<list>[^}]*)\}", names)
        taken = set()
        if braces:
            for item in braces["list"].split(","):
                if item.strip():
                    taken.add(item.split(" as ")[0].strip())
        yield match["spec"] or match["dynamic"], taken


def resolve(importer: str, spec: str) -> str:
    """The URL path `spec` names from the module at URL path `importer`."""
    assert spec.startswith(("/", "./", "../")), (
        f"{importer} imports {spec!r}: a bare specifier needs an import map, which the page has not"
    )
    if spec.startswith("/"):
        return posixpath.normpath(spec)
    return posixpath.normpath(posixpath.join(posixpath.dirname(importer), spec))


def file_of(url: str) -> Path:
    assert url.startswith("/static/"), f"{url} is outside /static/"
    return STATIC_DIR / url.removeprefix("/static/")


def module_graph(client: FlaskClient) -> dict[str, str]:
    """Every module the page loads (URL path -> source), as the server sends them."""
    page = get(client, "/").text
    entries = [m["src"] for m in MODULE_SCRIPT.finditer(page)]
    assert entries, "index.html loads no module script"
    graph: dict[str, str] = {}
    todo = list(entries)
    while todo:
        url = todo.pop()
        if url in graph:
            continue
        served = get(client, url)
        assert served.status == 200, f"{url}: {served.status}"
        graph[url] = served.text
        todo.extend(resolve(url, spec) for spec, _ in imports_of(graph[url]))
    return graph


def test_every_module_is_served_as_javascript_and_revalidated(client: FlaskClient) -> None:
    graph = module_graph(client)
    # The entry and at least the state, socket and views under js/.
    assert "/static/app.js" in graph
    assert any(url.startswith("/static/js/views/") for url in graph)
    for url in graph:
        served = get(client, url)
        assert served.mimetype == "text/javascript", f"{url}: {served.mimetype}"
        assert served.cache_control == "no-cache", url


def test_imports_name_files_that_exist_and_names_they_export(client: FlaskClient) -> None:
    graph = module_graph(client)
    for url, source in graph.items():
        for spec, names in imports_of(source):
            target = resolve(url, spec)
            path = file_of(target)
            assert path.is_file(), f"{url} imports {spec!r}: {path} does not exist"
            exported = {m["name"] for m in EXPORT.finditer(path.read_text())}
            missing = names - exported
            assert not missing, (
                f"{url} imports {sorted(missing)} from {spec!r}, which does not export them"
            )


def test_every_module_on_disk_is_loaded_by_the_page(client: FlaskClient) -> None:
    graph = module_graph(client)
    on_disk = {"/static/" + p.relative_to(STATIC_DIR).as_posix() for p in STATIC_DIR.rglob("*.js")}
    assert on_disk - set(graph) == set(), "modules nothing imports"


def test_javascript_type_does_not_depend_on_the_hosts_mime_tables(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some hosts map .js to text/plain; a browser would then refuse every module.
    monkeypatch.setattr(mimetypes, "guess_type", lambda *_a, **_k: ("text/plain", None))
    for url in ("/static/app.js", "/static/js/state.js", "/static/js/views/render.js"):
        assert get(client, url).mimetype == "text/javascript", url


def test_files_outside_the_client_and_missing_ones_are_404(client: FlaskClient) -> None:
    for url in ("/static/nothing.js", "/static/js/nothing.js", "/static/../__init__.py"):
        served = get(client, url)
        assert served.status == 404, url
        assert isinstance(served.json, dict) and served.json["error"]["code"] == "not_found", url


def test_the_service_worker_is_served_from_the_root_as_a_classic_script(
    client: FlaskClient,
) -> None:
    served = get(client, "/sw.js")
    assert served.status == 200
    assert served.mimetype == "text/javascript"
    assert served.cache_control == "no-cache"  # an update is picked up on the next check
    # A classic worker (registered without type: "module"): no imports at all.
    assert list(imports_of(served.text)) == []
    for event in ("push", "notificationclick"):
        assert f'addEventListener("{event}"' in served.text, event


def test_the_page_has_no_inline_scripts_styles_or_event_handlers(client: FlaskClient) -> None:
    """What a Content-Security-Policy without 'unsafe-inline' would refuse."""
    page = get(client, "/").text
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []
    assert "<style" not in page
    assert re.findall(r"\sstyle=", page) == []
    assert re.findall(r"\son[a-z]+=", page) == []
