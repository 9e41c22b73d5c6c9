"""The pure core: SSE decoding, LangGraph events, the timing model and results. No I/O."""
