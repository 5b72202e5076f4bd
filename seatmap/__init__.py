"""seatmap: a real-time seat-map server for cinemas and events."""

from __future__ import annotations

__version__ = "0.1.0"
