"""The etcd adapter of the Router: gateway registrations and user routes under leases.

One job per module:

- ``http``: the members' HTTP/JSON gateway, failover between them, range paging;
- ``keys``: the key layout under ``settings.etcd_prefix``;
- ``tree``: this process's copy of the keys, which ``gateways_for`` reads;
- ``watch``: the watch that keeps that copy current, and its resyncs;
- ``leases``: this process's gateways, their leases and renewals;
- ``prune``: deleting routes that no live registration stands behind;
- ``probe``: the health probe, shared with the infra check;
- ``router``: ``EtcdRouter``, which puts them together.
"""

from imchat.backends.etcd.probe import endpoint_health
from imchat.backends.etcd.router import EtcdRouter

__all__ = ["EtcdRouter", "endpoint_health"]
