"""The long-running exporter: targets file and settings, scheduler, HTTP endpoints, lifecycle."""

from exporter.daemon.lifecycle import serve

__all__ = ["serve"]
