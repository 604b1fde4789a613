"""imchat: an instant-messaging backend."""

from imchat.factory import create_app

__all__ = ["create_app"]
