"""The ceiling: a minimal flask-sock app under the same gunicorn gevent command
line as imchat's web process (``gunicorn -k gevent ... benchmarks.echo_app:app``).

Frames are opaque bytes; the first byte picks what the server does, so the
load generator can measure the bare stack with the same frames it sends imchat:

- ``B...``: broadcast the frame to every other open socket (the in-process
  fan-out ceiling), then answer ``D`` to the sender, the ack of the broadcast;
- anything else: echoed back as is.

``/ws?push=N`` first pushes N frames and then ``synced``, the ceiling of a
reconnect with N pending messages. ``GET /page?n=N&shape=message|conversation``
answers a JSON page of N made-up items shaped like imchat's, the ceiling of a
page of history or of the conversation list.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

from typing import Any  # noqa: E402

from flask import Flask, request  # noqa: E402
from flask_sock import ConnectionClosed, Sock  # noqa: E402

app = Flask(__name__)
# The same server options as imchat's gateway (imchat/gateway/ws.py).
app.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": 25, "max_message_size": 64 * 1024}
sock = Sock(app)
# Every open socket of this worker: the broadcast targets.
sockets: set[Any] = set()
PENDING_FRAME = '{"type":"msg","body":"pending"}'


def push_pending(ws: Any, count: int) -> None:
    """What a reconnect costs the bare stack: N frames, then ``synced``."""
    for _ in range(count):
        ws.send(PENDING_FRAME)
    ws.send(f'{{"type":"synced","count":{count}}}')


def broadcast(sender: Any, frame: str | bytes) -> None:
    """Send the frame to every other socket, in this greenlet, like a gateway push."""
    for target in list(sockets):
        if target is not sender:
            try:
                target.send(frame)
            except ConnectionClosed:
                sockets.discard(target)
    sender.send("D")


@sock.route("/ws")
def echo(ws: Any) -> None:
    sockets.add(ws)
    try:
        push_pending(ws, int(request.args.get("push", "0")))
        while True:
            frame = ws.receive()
            if frame[:1] in ("B", b"B"):
                broadcast(ws, frame)
            else:
                ws.send(frame)
    except ConnectionClosed:
        pass
    finally:
        sockets.discard(ws)


MESSAGE = {
    "msg_id": "0" * 32, "conversation_id": "d:" + "1" * 32 + ":" + "2" * 32, "seq": 123456,
    "from": "1" * 32, "to": "2" * 32, "body": "message 123456 of the benchmark history",
    "ts": 1_790_000_000_000, "reply_to": None, "edited_at": None, "deleted": False,
    "reactions": {},
}  # fmt: skip
CONVERSATION = {
    "conversation_id": MESSAGE["conversation_id"], "kind": "direct", "peer_id": "2" * 32,
    "last_seq": 10, "last_message": MESSAGE, "last_activity": 1_790_000_000_000,
    "delivered_seq": 10, "read_seq": 5, "unread": 3,
}  # fmt: skip


@app.get("/page")
def page() -> dict[str, Any]:
    """A page as large as imchat's, built per request (as imchat builds its views)."""
    count = int(request.args.get("n", "50"))
    if request.args.get("shape") == "conversation":
        return {"conversations": [dict(CONVERSATION) for _ in range(count)], "next": "x" * 60}
    return {"messages": [dict(MESSAGE) for _ in range(count)], "has_more": True}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
