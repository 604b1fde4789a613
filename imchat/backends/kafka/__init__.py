"""The Kafka adapter of the message bus (confluent-kafka), gevent-friendly.

One job per module:

- ``client``: the configuration every client shares, the consumer's and
  the producer's own, broker errors as BackendUnavailable, and running
  librdkafka's blocking calls off the gevent hub;
- ``producer``: the producer, the OS thread serving its delivery reports,
  and its replacement after a fork or a lost idempotence state;
- ``consumer``: ``KafkaConsumer``, the ``BusConsumer`` of a group
  (poll, commit, lag);
- ``admin``: creating topics, listing them (``partitions_by_topic``, shared
  with the infra check), the metadata ping;
- ``bus``: ``KafkaBus``, which puts them together.

confluent-kafka is a C library: ``poll``, ``flush``, ``consume`` and
``list_topics`` block the whole gevent hub while they wait. So:

* the producer is served by ONE real OS thread looping ``producer.poll(0.1)``
  (a thread of the hub's threadpool under gevent, a plain thread otherwise);
  its delivery callbacks hand each report back to the publishing greenlet
  through ``hub.loop.run_callback_threadsafe`` (setting an ``AsyncResult``
  straight from another thread is not safe), or to a ``threading.Event``
  when gevent is not patched in;
* every other blocking call (consume, commit, close, admin calls) runs in
  the hub's threadpool under gevent.

The producer is created lazily, and again after a fork, so that a gunicorn
worker never shares librdkafka's threads with its parent.

Tansu (the Kafka-protocol broker of the test machines) against Apache
Kafka: measured on tansu 0.6.0, Kafka's side from its documentation.

* ``consume(n, timeout)`` waits the whole timeout unless ``n`` records
  arrive (librdkafka, on both), so ``poll_batch`` waits for ONE record and
  then drains what is already buffered without waiting.
* tansu accepts ``min.insync.replicas`` and ``retention.ms`` at topic
  creation without complaint (whether it enforces them was not checked)
  and answers TOPIC_ALREADY_EXISTS like Kafka.
* tansu sends partition-EOF events when ``enable.partition.eof`` is on;
  it is off here and such events are skipped anyway.
* joining a group takes about session.timeout.ms / 2 on tansu (~3 s at
  6000 ms, ~1.1 s at 2000 ms) where Kafka waits
  group.initial.rebalance.delay.ms (3 s by default) for a new group; Kafka
  refuses a session timeout under group.min.session.timeout.ms (6000 ms by
  default), which is why 6000 ms is the default here.
* a broker that cannot be reached reaches a consumer through ``error_cb``
  only (librdkafka, on both): ``consume`` just returns nothing.
* tansu lists no internal topics; Kafka lists ``__consumer_offsets``, which
  ``topic_partitions`` leaves out.
"""

from imchat.backends.kafka.admin import partitions_by_topic
from imchat.backends.kafka.bus import KafkaBus
from imchat.backends.kafka.consumer import KafkaConsumer

__all__ = ["KafkaBus", "KafkaConsumer", "partitions_by_topic"]
