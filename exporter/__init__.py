"""langgraph-stream-exporter: synthetic streaming probes for LangGraph API deployments."""

__version__ = "0.1.0"
