"""One synthetic streaming probe: request a run, read its SSE stream, time it, clean up.

`request` builds what is sent, `run` reads and times the stream, `threads` creates and
removes the thread around a thread-mode run.
"""

from exporter.probe.protocol import forget_protocols, probe
from exporter.probe.request import PROBE_MARKER, TraceParent, request_body
from exporter.probe.run import failed_result
from exporter.probe.threads import CLEANUP_TIMEOUT_S

__all__ = [
    "CLEANUP_TIMEOUT_S",
    "PROBE_MARKER",
    "TraceParent",
    "failed_result",
    "forget_protocols",
    "probe",
    "request_body",
]
