"""Property tests (hypothesis): the decoders and the config loader on arbitrary input.

What each may raise is part of its contract: the SSE decoder and `decode_event` only
`StreamProtocolError` (the prober turns it into a `protocol` failure), `load_config` only
`ConfigError` (the daemon keeps its old config). Anything else would reach a probe or a reload
as an `internal` error or a traceback.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import load_config
from exporter.core.errors import ConfigError, StreamProtocolError
from exporter.core.events import LARGE_EVENT_BYTES, decode_event
from exporter.core.sse import SSEDecoder
from exporter.core.timing import Expectations, Timeline

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# A reference SSE decoder, straight from the WHATWG algorithm
# --------------------------------------------------------------------------------------------

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"

#: (event name, data, last event id, offset of the byte that completed the event)
RefEvent = tuple[str, bytes, str | None, int]


def reference_decode(stream: bytes) -> list[RefEvent]:
    """https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

    Works on bytes like the decoder under test; field values are decoded as UTF-8 with
    replacement only where the spec's result is a string (event type, id). Lines end at CRLF,
    CR or LF; a leading BOM is dropped; an unterminated last line and an event without its
    blank line are discarded at EOF. The last event id starts as None (the spec's "") and,
    as in the spec, persists across events.
    """
    events: list[RefEvent] = []
    data: list[bytes]
    last_id: str | None
    name, data, last_id = b"", [], None
    start = len(_BOM) if stream.startswith(_BOM) else 0
    for m in _LINE_END.finditer(stream, start):
        line = stream[start : m.start()]
        start = m.end()
        if not line:
            if data:
                label = name.decode("utf-8", "replace") or "message"
                events.append((label, b"\n".join(data), last_id, m.start()))
            name, data = b"", []
        elif line.startswith(b":"):
            continue
        else:
            field, colon, value = line.partition(b":")
            if colon and value.startswith(b" "):
                value = value[1:]
            if field == b"data":
                data.append(value)
            elif field == b"event":
                name = value
            elif field == b"id" and b"\x00" not in value:
                last_id = value.decode("utf-8", "replace")
    return events


def decode_in_chunks(stream: bytes, cuts: list[int], **kw: Any) -> list[RefEvent]:
    """Feed `stream` cut at `cuts`, chunk i stamped i; events as (name, data, id, stamp)."""
    bounds = [0, *sorted(cuts), len(stream)]
    dec = SSEDecoder(**kw)
    out: list[RefEvent] = []
    for i in range(len(bounds) - 1):
        for e in dec.feed(stream[bounds[i] : bounds[i + 1]], i):
            assert e.chunk_seq == i
            out.append((e.event, e.data, e.id, e.recv_ns))
    return out


def chunk_of(stream: bytes, cuts: list[int], offset: int) -> int:
    """Index of the chunk holding byte `offset` when `stream` is cut at `cuts`."""
    ends = [*sorted(cuts), len(stream)]
    return bisect.bisect_right(ends, offset)


#: Bytes that make SSE interesting, mixed with arbitrary ones.
_PIECES = st.sampled_from(
    [
        *(b"data", b"event", b"id", b"retry", b":", b": ", b" ", b"\r", b"\n", b"\r\n", b"x"),
        *(_BOM, b"\xff", "é".encode(), "\u2028".encode(), b"\x00", b"messages", b"{}"),
    ]
)
_LINE_TEXT = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]))


@st.composite
def valid_events(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, bytes, str | None]]]:
    """A well-formed stream (any line ending per line, comments, ids) and its events."""
    raw: list[bytes] = []
    expected: list[tuple[str, bytes, str | None]] = []
    last_id: str | None = None
    for _ in range(draw(st.integers(0, 8))):
        eol = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
        if draw(st.booleans()):
            raw.append(b": heartbeat" + eol)
        name = draw(st.none() | st.sampled_from(["messages", "tasks", "metadata", "error"]))
        if name is not None:
            raw.append(b"event: " + name.encode() + eol)
        if draw(st.booleans()):
            last_id = draw(st.text(st.characters(whitelist_categories=["Nd", "Ll"]), max_size=8))
            raw.append(b"id: " + last_id.encode() + eol)
        lines = draw(st.lists(_LINE_TEXT, min_size=1, max_size=3))
        for line in lines:
            raw.append(b"data: " + line.encode() + eol)
        raw.append(eol)
        expected.append((name or "message", "\n".join(lines).encode(), last_id))
    return b"".join(raw), expected


SSE_LIKE = st.tuples(
    # The stream's first bytes matter on their own: a BOM (or half of one) is special there.
    st.sampled_from([b"", b"", _BOM, _BOM[:2]]),
    st.one_of(
        st.binary(max_size=200),
        st.lists(_PIECES | st.binary(max_size=4), max_size=60).map(b"".join),
        valid_events().map(lambda case: case[0]),
    ),
).map(b"".join)


@st.composite
def stream_and_cuts(draw: st.DrawFn, streams: st.SearchStrategy[bytes]) -> tuple[bytes, list[int]]:
    stream = draw(streams)
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=12))
    return stream, cuts


@FUZZ
@given(stream_and_cuts(SSE_LIKE))
def test_decoder_matches_the_reference_on_arbitrary_bytes(case: tuple[bytes, list[int]]) -> None:
    """Any bytes, cut anywhere, decode to the reference's events, each stamped by its last read."""
    stream, cuts = case
    got = decode_in_chunks(stream, cuts)
    want = [
        (name, data, id_, chunk_of(stream, cuts, at))
        for name, data, id_, at in reference_decode(stream)
    ]
    assert got == want


@FUZZ
@given(stream_and_cuts(SSE_LIKE), st.integers(1, 64))
def test_decoder_raises_only_stream_protocol_error(case: tuple[bytes, list[int]], cap: int) -> None:
    """With a tiny event cap, arbitrary input may be refused, but only as StreamProtocolError."""
    stream, cuts = case
    try:
        decode_in_chunks(stream, cuts, max_event_bytes=cap)
    except StreamProtocolError as exc:
        assert exc.kind.value == "protocol"


@FUZZ
@given(valid_events(), st.data())
def test_valid_events_decode_the_same_however_chunked(
    case: tuple[bytes, list[tuple[str, bytes, str | None]]], data: st.DataObject
) -> None:
    """A stream of valid events yields exactly those events for every chunking."""
    stream, expected = case
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    got = decode_in_chunks(stream, cuts)
    assert [(n, d, i) for n, d, i, _ in got] == expected
    assert decode_in_chunks(stream, []) == [(n, d, i, 0) for n, d, i, _ in got]


def test_a_bom_split_across_reads_is_dropped() -> None:
    """The spec's one leading BOM is dropped even when it arrives a byte at a time."""
    stream = _BOM + b"data: x\r\n\r\n"
    assert decode_in_chunks(stream, [1, 2, 3]) == [("message", b"x", None, 3)]


# --------------------------------------------------------------------------------------------
# decode_event and the timeline on arbitrary data
# --------------------------------------------------------------------------------------------

EVENT_NAMES = st.sampled_from(
    ["messages", "messages|research:1", "tasks", "tasks|a:b|c:d", "metadata", "error", "end"]
) | st.text(max_size=20)

_KEYS = [
    "content", "type", "id", "tool_call_chunks", "usage_metadata", "chunk_position", "input",
    "name", "error", "result", "run_id", "attempt", "message", "langgraph_node",
    "langgraph_checkpoint_ns", "ls_model_name", "ls_provider", "output_tokens", "text",
]  # fmt: skip
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["AIMessageChunk", "last", "agent:1", "a:1|b:2", "", "|", ":"])
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=25,
)


def _dumps(value: Any) -> bytes:
    # The stdlib, not orjson: it writes big ints and Infinity, which the decoder must survive.
    return json.dumps(value).encode()


EVENT_DATA = st.one_of(
    st.binary(max_size=100),
    JSON_VALUES.map(_dumps),
    st.tuples(JSON_VALUES, JSON_VALUES).map(lambda pair: _dumps(list(pair))),
)


@FUZZ
@given(st.lists(st.tuples(EVENT_NAMES, EVENT_DATA), max_size=12))
def test_decode_event_raises_only_stream_protocol_error(events: list[tuple[str, bytes]]) -> None:
    """Arbitrary names and data decode or raise StreamProtocolError; the timeline takes them all."""
    timeline = Timeline(0)
    for i, (name, data) in enumerate(events):
        try:
            ev = decode_event(name, data)
        except StreamProtocolError:
            continue
        timeline.event(name, ev, i + 1, i)
    timeline.nodes()
    timeline.event_log()
    timeline.verdict(Expectations(min_tokens=1, nodes=("agent",), content_regex="x"))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"[" * (LARGE_EVENT_BYTES + 1), id="deep-nesting"),
        pytest.param(b"[" + b"NaN," * (LARGE_EVENT_BYTES // 4) + b"1]", id="nan"),
        pytest.param(b'["' + b"\xff" * LARGE_EVENT_BYTES + b'"]', id="not-utf8"),
    ],
)
def test_large_event_data_that_is_not_json_is_a_protocol_error(data: bytes) -> None:
    """Events past the stdlib-parser threshold still fail only with StreamProtocolError."""
    with pytest.raises(StreamProtocolError, match="not JSON"):
        decode_event("messages", data)


# --------------------------------------------------------------------------------------------
# the config loader on arbitrary YAML
# --------------------------------------------------------------------------------------------

_CONFIG_KEYS = [
    "targets", "defaults", "name", "url", "assistant_id", "mode", "input", "config", "interval",
    "timeout", "connect", "headers", "first_event", "first_token", "idle", "total", "labels",
    "api_key_env", "api_key_file", "secret_headers", "env", "file", "expect", "min_tokens",
    "nodes", "content_regex", "ca_file", "insecure_skip_verify", "stream_subgraphs", "context",
]  # fmt: skip
_CONFIG_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        ["30s", "500ms", "2m", "0s", "-1s", "1h", "http://127.0.0.1:2024", "ftp://x", "thread"]
    )
    | st.sampled_from(["stateless", "agent", "(", "x-api-key", "node", "target", "__x"])
)
YAML_VALUES = st.recursive(
    _CONFIG_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_CONFIG_KEYS) | st.text(max_size=10), inner, max_size=8)
    ),
    max_leaves=40,
)


@st.composite
def config_documents(draw: st.DrawFn) -> str:
    """A YAML document: a generated structure (often target-shaped) or random text."""
    kind = draw(st.sampled_from(["structure", "targets", "text"]))
    if kind == "text":
        return draw(st.text(max_size=300))
    if kind == "structure":
        value = draw(YAML_VALUES)
    else:
        value = {
            "defaults": draw(
                st.dictionaries(st.sampled_from(_CONFIG_KEYS), YAML_VALUES, max_size=4)
            ),
            "targets": draw(
                st.lists(
                    st.fixed_dictionaries(
                        {"name": st.sampled_from(["a", "b", "bad name"]), "url": _CONFIG_SCALARS},
                        optional={k: YAML_VALUES for k in _CONFIG_KEYS if k not in ("name", "url")},
                    ),
                    max_size=3,
                )
            ),
        }
    text: str = yaml.safe_dump(value, allow_unicode=True)
    return text


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("fuzz") / "config.yaml"


@FUZZ
@given(config_documents())
def test_config_loader_raises_only_config_error(config_path: Path, document: str) -> None:
    """Whatever YAML or text the file holds, loading it succeeds or raises ConfigError."""
    config_path.write_text(document, encoding="utf-8")
    try:
        load_config(config_path)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        assert exc.path == str(config_path)
