"""schemathesis (an outside fuzzer, driven by the served OpenAPI document)
against a live embedded server, authenticated and not: no 5xx, and every
response matches what the document says (status codes, content types,
bodies), plus what a careful API does with bad input (negative data is
rejected, a missing auth header is a 401, a resource created can be read).

Bounded: a fixed seed and a few examples per operation. What it reported
beyond these checks (schema-valid inputs the server still refuses, such as
a cursor or a URL the document only calls a string) is listed in
docs/reliability.md.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import register_users
from tests.support.server import EmbeddedServer, run_server

pytestmark = pytest.mark.e2e
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "ignored_auth",
    ]
)
EXAMPLES = 10
SEED = 20261204


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    # The fuzzer registers and logs in far faster than a person: no limits here.
    env = {"IMCHAT_REGISTER_LIMIT_PER_ADDRESS": "0", "IMCHAT_LOGIN_LIMIT_PER_ADDRESS": "0"}
    yield from run_server(Path(tmp_path_factory.mktemp("schemathesis")), env)


def schemathesis(server: EmbeddedServer, *extra: str) -> None:
    argv = [str(SCHEMATHESIS), "run", server.base_url + "/api/v1/openapi.json"]
    argv += ["--max-examples", str(EXAMPLES), "--seed", str(SEED), "--checks", CHECKS]
    argv += ["--no-color", *extra]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    server.assert_no_traceback()


def test_every_operation_with_a_token(fuzzed_server: EmbeddedServer) -> None:
    (user,) = register_users(fuzzed_server.base_url, 1)
    # Logging out would end the token's session for the rest of the run.
    schemathesis(
        fuzzed_server,
        "--header",
        f"Authorization: Bearer {user.token}",
        "--exclude-path",
        "/api/v1/auth/logout",
    )


def test_every_operation_without_a_token(fuzzed_server: EmbeddedServer) -> None:
    schemathesis(fuzzed_server)
