"""Real test servers shared by the suites: a scripted LangGraph-wire server and an OTLP receiver.

Both listen on 127.0.0.1 only. Nothing here is a mock: clients talk to them over real sockets, so
timing, TLS, chunk boundaries and connection resets are what a probe would see in production.
"""
