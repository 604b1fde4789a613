"""Client frames: one class per type, holding its schema and its handler.

Importing this package registers every frame type (``base.REGISTRY``);
adding a type is one new class in a module imported here.
"""

from imchat.gateway.frames import changes, delivered, ping, send, typing
from imchat.gateway.frames.base import REGISTRY, ClientFrame, FrameError

__all__ = [
    "REGISTRY",
    "ClientFrame",
    "FrameError",
    "changes",
    "delivered",
    "ping",
    "send",
    "typing",
]
