"""Server-sent events from raw byte chunks, each chunk stamped with its arrival time. Pure: no I/O.

The decoder is fed exactly what the socket gave, with the monotonic time the bytes were read
(stamp before decoding: docs/adr/0003-stamp-at-data-received.md). Every event that a chunk
completes carries that chunk's stamp and sequence number, so several events finished by one read
share a timestamp and a burst can be counted (the buffering indicator, docs/WIRE.md §17).

It works on bytes, not text: lines end only at CR, LF or CRLF as the SSE spec says, so U+2028 in a
token (bytes E2 80 A8) can never split a line, and no UTF-8 decoding is paid for unread data.
See: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
"""

from __future__ import annotations

import sys
from typing import NamedTuple

from exporter.core.errors import StreamProtocolError

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEDecoder", "SSEEvent"]

#: An event larger than this is a protocol failure rather than unbounded memory. A `tasks` start
#: event carries the node's whole input state (docs/WIRE.md §3): this is far above a normal event.
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024

_LF = 0x0A
_CR = 0x0D
_BOM = b"\xef\xbb\xbf"


class SSEEvent(NamedTuple):
    """One dispatched event: its name, its data (data lines joined by LF), and when it arrived."""

    event: str
    data: bytes
    recv_ns: int
    chunk_seq: int
    id: str | None = None


class SSEDecoder:
    """Turns byte chunks into `SSEEvent`s; also counts `: heartbeat` comments (docs/WIRE.md §2)."""

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max_event_bytes = max_event_bytes
        self._buf = bytearray()
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to it
        self._event = b""
        self._data: list[bytes] = []
        self._data_len = 0
        self._last_id: str | None = None
        self._chunk_seq = -1
        #: the stream's first bytes while they may still be a byte order mark (None: past it)
        self._head: bytes | None = b""
        self.comments = 0
        self.bytes_read = 0

    def feed(self, chunk: bytes, recv_ns: int) -> list[SSEEvent]:
        """Decode one socket read; returns the events it completed, in order."""
        self._chunk_seq += 1
        self.bytes_read += len(chunk)
        if not chunk:
            return []
        if self._head is not None:
            # NOTE: the spec strips one leading U+FEFF (UTF-8 BOM), even when it arrives split.
            head = self._head + chunk
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._head = head
                return []
            self._head = None
            chunk = head[len(_BOM) :] if head.startswith(_BOM) else head
            if not chunk:
                return []
        if not (self._buf or self._skip_lf or self._data or self._event):
            events = self._feed_one_event(chunk, recv_ns)
            if events is not None:
                return events
        start = 0
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == _LF:
                start = 1
        buf = self._buf
        scan_from = len(buf)
        buf += memoryview(chunk)[start:]
        out: list[SSEEvent] = []
        pos = 0
        n = len(buf)
        while True:
            lf = buf.find(b"\n", scan_from)
            cr = buf.find(b"\r", scan_from, lf if lf >= 0 else n)
            if cr >= 0:
                end, nxt = cr, cr + 1
                if nxt < n:
                    if buf[nxt] == _LF:
                        nxt += 1
                else:
                    self._skip_lf = True  # NOTE: CRLF split across reads (docs/WIRE.md §2)
            elif lf >= 0:
                end, nxt = lf, lf + 1
            else:
                break
            self._line(buf, pos, end, recv_ns, out)
            pos = scan_from = nxt
        if pos:
            del buf[:pos]
        if len(buf) + self._data_len > self._max_event_bytes:
            raise StreamProtocolError(
                f"SSE event exceeds {self._max_event_bytes} bytes", phase="stream"
            )
        return out

    def _feed_one_event(self, chunk: bytes, recv_ns: int) -> list[SSEEvent] | None:
        """Fast path for the most common read: exactly one `event:` + `data:` event in CRLF.

        NOTE: LangGraph frames every event as `event: X\r\ndata: Y\r\n\r\n` (docs/WIRE.md §2) and
        a loopback read usually holds exactly one; taking it apart with a few `find`s costs a
        third of the general line loop. Anything else returns None and takes the general path,
        which is the reference (the fuzz tests hold the two to the same output).
        """
        if not (chunk.startswith(b"event: ") and chunk.endswith(b"\r\n\r\n")):
            return None
        eol = chunk.find(b"\r\n", 7)
        end = len(chunk) - 4
        if (
            not chunk.startswith(b"data: ", eol + 2)
            or chunk.find(b"\n", 7, eol) >= 0
            or chunk.find(b"\r", 7, eol) >= 0
            or chunk.find(b"\r", eol + 8, end) >= 0
            or chunk.find(b"\n", eol + 8, end) >= 0
            or end - eol - 8 > self._max_event_bytes
        ):
            return None
        # Interned: a result keeps every event's name, and there are only a handful of names.
        name = sys.intern(chunk[7:eol].decode("utf-8", "replace") or "message")
        return [SSEEvent(name, chunk[eol + 8 : end], recv_ns, self._chunk_seq, self._last_id)]

    def _line(
        self, buf: bytearray, start: int, end: int, recv_ns: int, out: list[SSEEvent]
    ) -> None:
        """Interpret the line `buf[start:end]`; only the part a field keeps is copied, once.

        A 10 MB data line must not be copied four times over (slice, bytes, partition, strip)
        on its way into an event (memory stays bounded on a hostile stream).
        """
        if start == end:
            if self._data:
                data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                name = sys.intern(self._event.decode("utf-8", "replace") or "message")
                out.append(SSEEvent(name, data, recv_ns, self._chunk_seq, self._last_id))
            self._event = b""
            self._data = []
            self._data_len = 0
            return
        if buf[start] == 0x3A:  # ":" comment, e.g. the 5 s heartbeat
            self.comments += 1
            return
        colon = buf.find(b":", start, end)
        field_end = end if colon < 0 else colon
        if field_end - start > 5:
            return  # longer than any field we keep: `retry` and unknown fields are ignored
        field = bytes(buf[start:field_end])
        value_start = end
        if colon >= 0:
            value_start = colon + 1
            if value_start < end and buf[value_start] == 0x20:
                value_start += 1
        if field == b"data":
            self._data_len += end - value_start + 1
            if self._data_len > self._max_event_bytes:
                raise StreamProtocolError(
                    f"SSE event exceeds {self._max_event_bytes} bytes", phase="stream"
                )
            self._data.append(bytes(memoryview(buf)[value_start:end]))
        elif field == b"event":
            self._event = bytes(buf[value_start:end])
        elif field == b"id":
            value = bytes(buf[value_start:end])
            if b"\x00" not in value:
                # NOTE: per the SSE spec the last id persists across events; ids with NUL are
                # ignored.
                self._last_id = value.decode("utf-8", "replace")
        # `retry` and unknown fields are ignored as the spec says (never sent: docs/WIRE.md §2).

    def pending_bytes(self) -> int:
        """Bytes of an unfinished event still buffered: non-zero at EOF means a truncated event."""
        return len(self._buf) + self._data_len + len(self._head or b"")
