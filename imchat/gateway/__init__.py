"""The WebSocket gateway: connections, frames and their handlers."""
