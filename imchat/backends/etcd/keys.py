"""The router's key layout under ``settings.etcd_prefix`` (P)::

    P/gateways/{gateway_id}          -> the gateway id
    P/routes/{user_id}/{gateway_id}  -> "1"

Both hang on the gateway's lease, so a dead gateway's routes vanish with it.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

ROUTE_VALUE = "1"


class Keys:
    """Key layout. Ids are percent-quoted so that a '/' in one cannot shift the parts."""

    def __init__(self, prefix: str) -> None:
        self.root = prefix.rstrip("/") + "/"

    def gateway(self, gateway_id: str) -> str:
        return f"{self.root}gateways/{quote(gateway_id, safe='')}"

    def route(self, user_id: str, gateway_id: str) -> str:
        return f"{self.root}routes/{quote(user_id, safe='')}/{quote(gateway_id, safe='')}"

    def parse(self, key: str) -> tuple[str, str | None] | None:
        """(gateway_id, None) for a gateway key, (gateway_id, user_id) for a route."""
        if not key.startswith(self.root):
            return None
        parts = key[len(self.root) :].split("/")
        if parts[0] == "gateways" and len(parts) == 2:
            return unquote(parts[1]), None
        if parts[0] == "routes" and len(parts) == 3:
            return unquote(parts[2]), unquote(parts[1])
        return None
