"""The README's Python example runs as printed, on a fresh embedded server."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.support.server import EmbeddedServer

pytestmark = pytest.mark.e2e
README = Path(__file__).resolve().parents[2] / "README.md"


def python_example() -> str:
    text = README.read_text()
    section = text[text.index("## Talking to it from Python") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "no python block in the README's client section"
    return found.group(1)


def test_the_readme_example_is_five_lines_of_code_and_runs(embedded_server: EmbeddedServer) -> None:
    code = python_example()
    assert len([line for line in code.splitlines() if line.strip()]) == 5
    code = code.replace("http://127.0.0.1:8000", embedded_server.base_url)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})  # the example itself, unchanged
    assert printed.getvalue().split() == ["1", "hi", "bob"]
