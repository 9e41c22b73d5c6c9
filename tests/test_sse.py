"""The SSE decoder: chunk boundaries anywhere, CRLF framing, heartbeats, stamps per read."""

from __future__ import annotations

import pytest

from exporter.core.errors import StreamProtocolError
from exporter.core.sse import SSEDecoder

TOKEN = b'event: messages\r\ndata: [{"content":"hi"},{}]\r\n\r\n'


def decode(chunks: list[bytes]) -> list[tuple[str, bytes, int]]:
    """Feed chunks stamped 0, 1, 2, ... and return (event, data, stamp) triples."""
    dec = SSEDecoder()
    out = []
    for i, chunk in enumerate(chunks):
        out += [(e.event, e.data, e.recv_ns) for e in dec.feed(chunk, i)]
    return out


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param([b"event: a\r\ndata: 1\r\n\r\n"], [("a", b"1", 0)], id="crlf"),
        pytest.param([b"event: a\ndata: 1\n\n"], [("a", b"1", 0)], id="lf"),
        pytest.param([b"event: a\rdata: 1\r\r"], [("a", b"1", 0)], id="cr"),
        pytest.param([b"event: a\r", b"\ndata: 1\r\n\r\n"], [("a", b"1", 1)], id="crlf-split"),
        pytest.param([b"event: a\r\ndata: 1\r\n\r", b"\n"], [("a", b"1", 0)], id="final-cr-split"),
        pytest.param([b"event: a\r\nda", b"ta: 1\r\n\r\n"], [("a", b"1", 1)], id="mid-line"),
        pytest.param(
            [b"eve", b"nt: a\r\n", b"data:", b" 1", b"\r\n", b"\r\n"],
            [("a", b"1", 5)],
            id="every-field-split",
        ),
        pytest.param([b"data: x\r\n\r\n"], [("message", b"x", 0)], id="default-name"),
        pytest.param([b"data:x\r\n\r\n"], [("message", b"x", 0)], id="no-space"),
        pytest.param([b"data: a\r\ndata: b\r\n\r\n"], [("message", b"a\nb", 0)], id="multi-data"),
        pytest.param([b"event: a\r\n\r\n"], [], id="no-data-no-dispatch"),
        pytest.param([b"data: 1\r\n"], [], id="unterminated"),
        pytest.param(
            [b"event: messages|research:abc\r\ndata: {}\r\n\r\n"],
            [("messages|research:abc", b"{}", 0)],
            id="namespaced-name",
        ),
        pytest.param(
            ["data: \u2028 line sep\r\n\r\n".encode()],
            [("message", "\u2028 line sep".encode(), 0)],
            id="u2028-not-a-newline",
        ),
        pytest.param(
            ["data: é\r\n\r\n".encode()[:7], "data: é\r\n\r\n".encode()[7:]],
            [("message", "é".encode(), 1)],
            id="utf8-split-mid-char",
        ),
    ],
)
def test_decoder_table(chunks: list[bytes], expected: list[tuple[str, bytes, int]]) -> None:
    """Each framing case decodes to the same events, stamped by the read that completed them."""
    assert decode(chunks) == expected


def test_heartbeats_between_tokens_are_counted_not_dispatched() -> None:
    """`: heartbeat` comments (docs/WIRE.md §2) never become events, but are counted."""
    dec = SSEDecoder()
    events = dec.feed(TOKEN + b": heartbeat\r\n\r\n" + TOKEN, 7)
    assert [e.event for e in events] == ["messages", "messages"]
    assert dec.comments == 1


def test_events_completed_by_one_read_share_its_stamp_and_sequence() -> None:
    """Several events in one read share the read's arrival time (docs/WIRE.md §17)."""
    dec = SSEDecoder()
    dec.feed(TOKEN[:10], 1)
    events = dec.feed(TOKEN[10:] + TOKEN + TOKEN[:5], 2)
    assert [(e.recv_ns, e.chunk_seq) for e in events] == [(2, 1), (2, 1)]


def test_byte_at_a_time_matches_whole() -> None:
    """Splitting a real capture at every byte gives the same events as one read."""
    body = TOKEN + b": heartbeat\r\n\r\n" + b"event: metadata\r\ndata: {}\r\n\r\n" + TOKEN
    whole = [(e.event, e.data) for e in SSEDecoder().feed(body, 0)]
    dec = SSEDecoder()
    split = [(e.event, e.data) for i in range(len(body)) for e in dec.feed(body[i : i + 1], i)]
    assert split == whole


def test_oversized_event_is_a_protocol_error() -> None:
    """An event past the cap raises instead of buffering without bound."""
    dec = SSEDecoder(max_event_bytes=1000)
    with pytest.raises(StreamProtocolError, match="exceeds 1000 bytes"):
        for i in range(10):
            dec.feed(b"data: " + b"x" * 200, i)


def test_pending_bytes_reports_a_truncated_event() -> None:
    """An event cut off by EOF leaves pending bytes, so the prober can call it incomplete."""
    dec = SSEDecoder()
    dec.feed(b"event: messages\r\ndata: [1,", 0)
    assert dec.pending_bytes() > 0


def test_id_persists_across_events() -> None:
    """Per the SSE spec the last id is kept for following events (resumable ids, docs/WIRE.md §2)."""
    dec = SSEDecoder()
    events = dec.feed(b"id: 17-0\r\ndata: a\r\n\r\ndata: b\r\n\r\n", 0)
    assert [e.id for e in events] == ["17-0", "17-0"]


@pytest.mark.parametrize(
    "chunk",
    [
        b"event: messages\r\ndata: {}\r\n\r\n",
        b"event: a\rb\r\ndata: x\r\n\r\n",
        b"event: a\nb\r\ndata: x\r\n\r\n",
        b"event: a\r\ndata: x\ny\r\n\r\n",
        b"event: a\r\ndata: x\ry\r\n\r\n",
        b"event: a\r\ndata:  two spaces\r\n\r\n",
        b"event: a\r\ndata: x\r\ndata: y\r\n\r\n",
        b"event: a\r\nid: 5\r\ndata: x\r\n\r\n",
        b"event: \r\ndata: x\r\n\r\n",
    ],
    ids=[
        "plain",
        "cr-in-name",
        "lf-in-name",
        "lf-in-data",
        "cr-in-data",
        "two-spaces",
        "two-data",
        "id",
        "empty-name",
    ],
)
def test_single_event_fast_path_matches_the_general_path(chunk: bytes) -> None:
    """The one-event fast path gives exactly what the general line loop gives."""
    fast = SSEDecoder().feed(chunk, 1)
    general = SSEDecoder()
    general._feed_one_event = lambda c, r: None  # type: ignore[method-assign]
    assert fast == general.feed(chunk, 1)
