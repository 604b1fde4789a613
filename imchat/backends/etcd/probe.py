"""The etcd health probe, shared by the router's ``ping`` and the infra check.

Plain ``urllib`` with no proxy handler: etcd is always reached directly, and
a probe needs no session or client of its own.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from imchat.backends.etcd.http import normalize


def call(endpoint: str, path: str, timeout: float, body: bytes | None = None) -> Any:
    """One JSON call to etcd's HTTP gateway (a POST when there is a ``body``)."""
    request = urllib.request.Request(normalize(endpoint) + path, data=body, method="GET")
    if body is not None:
        request.method = "POST"
        request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def failure_reason(exc: BaseException, timeout: float) -> str:
    """'Connection refused' rather than '<urlopen error [Errno 111] Connection refused>'."""
    cause = getattr(exc, "reason", None) or exc
    if isinstance(cause, TimeoutError):
        return f"no answer within {timeout:g}s"
    return getattr(cause, "strerror", None) or str(cause)


def endpoint_health(endpoint: str, timeout: float) -> str | None:
    """None when the etcd member at ``endpoint`` reports itself healthy, else the reason."""
    try:
        health = call(endpoint, "/health", timeout)
    except urllib.error.HTTPError as exc:
        return f"answered HTTP {exc.code} on /health"
    except (OSError, ValueError) as exc:
        return f"unreachable ({failure_reason(exc, timeout)})"
    if not isinstance(health, dict) or health.get("health") != "true":
        return f"unhealthy ({json.dumps(health)})"
    return None


def member_names(endpoint: str, timeout: float) -> list[str]:
    """The names of the cluster's members, as ``endpoint`` sees them.

    Raises OSError or ValueError when the member list cannot be read.
    """
    reply = call(endpoint, "/v3/cluster/member/list", timeout, b"{}")
    return [m.get("name") or m.get("ID", "?") for m in reply.get("members", [])]
