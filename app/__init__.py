"""Windsock: a real-time streaming data server (WebSocket and SSE on named channels)."""

__version__ = "0.1.0"
