"""Stale routes: routes that no live gateway registration stands behind.

A route is stale when, at one revision of the prefix, its gateway's key is
missing or is held by another lease than the route: routes hang on the
gateway's lease, so such a route was left by a bug, written without a lease,
or left on the old lease of a gateway id registered again. Each delete
compares the route's mod_revision first: a route written again meanwhile (by
its gateway) is kept, and two prunes at once delete each route once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from imchat.backends.etcd.http import Endpoints, b64, text
from imchat.backends.etcd.keys import Keys


@dataclass(frozen=True)
class Entry:
    mod_revision: int
    lease: int


def read_entries(endpoints: Endpoints, keys: Keys) -> dict[str, Entry]:
    """Every key of the layout with its revision and lease, at one revision."""
    found = endpoints.read_prefix(keys.root, keys_only=True)
    # proto3 JSON leaves out zero values: no "lease" means no lease.
    return {
        text(kv["key"]): Entry(int(kv["mod_revision"]), int(kv.get("lease", 0))) for kv in found.kvs
    }


def stale_routes(entries: Mapping[str, Entry], keys: Keys) -> list[tuple[str, int]]:
    """(key, mod_revision) of every stale route among one snapshot's ``entries``."""
    stale = []
    for key, entry in entries.items():
        parsed = keys.parse(key)
        if parsed is None or parsed[1] is None:
            continue  # a gateway key, or not ours
        gateway = entries.get(keys.gateway(parsed[0]))
        if gateway is None or gateway.lease != entry.lease:
            stale.append((key, entry.mod_revision))
    return stale


def delete_if_unchanged(endpoints: Endpoints, key: str, mod_revision: int) -> int:
    """1 when ``key`` was still at ``mod_revision`` and is now deleted, else 0."""
    compare = {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": mod_revision}
    txn = {"compare": [compare], "success": [{"request_delete_range": {"key": b64(key)}}]}
    response = endpoints.post("/kv/txn", txn)
    return 1 if response.get("succeeded") else 0


def prune_stale(endpoints: Endpoints, keys: Keys, limit: int) -> int:
    """Delete up to ``limit`` stale routes; the number deleted."""
    stale = stale_routes(read_entries(endpoints, keys), keys)[:limit]
    return sum(delete_if_unchanged(endpoints, key, mod_revision) for key, mod_revision in stale)
