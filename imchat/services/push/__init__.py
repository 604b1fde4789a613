"""Web Push: notifications to browsers of users with no open connection.

``keys`` holds the VAPID key pair, ``subscriptions`` the browsers' push
subscriptions and each member's switch per conversation (the API's side),
``dispatcher`` gathers what delivery left unrouted into batches, and
``notify`` is the Celery job that picks who is notified and sends, through
the browsers' push services (RFC 8030, payloads encrypted as RFC 8291 says,
VAPID as RFC 8292). See docs/architecture.md, "Web Push".
"""
