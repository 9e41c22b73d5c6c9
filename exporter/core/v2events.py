"""Typed events of LangGraph's v2 event-streaming protocol, decoded from one SSE event. Pure.

A v2 event is an envelope (docs/V2.md §2):

    {"type": "event", "event_id": "1795985071013-0.1", "seq": 3, "method": "messages",
     "params": {"namespace": ["research:<task id>"], "timestamp": 1795985071013, "data": {...}}}

`params.timestamp` is the server's emit time in integer milliseconds, and `event_id` is the
upstream stream id with `.n` appended for the second and later envelopes made from one source
event: both are kept, because they let the timing model put server time beside arrival time and
count one token per source chunk. Only what the timing model needs is kept; `values` payloads
(the whole graph state) are reduced to their namespace and timestamp.
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

from exporter.core.errors import StreamProtocolError
from exporter.core.events import _loads, node_path

__all__ = [
    "V2Event",
    "V2Lifecycle",
    "V2MessageEvent",
    "V2Other",
    "V2Values",
    "decode_v2_event",
    "derived",
    "namespace_node",
]


class V2Lifecycle(NamedTuple):
    """`lifecycle`: `running`/`completed`/`failed`/`interrupted` (root), `started` (subgraphs)."""

    namespace: tuple[str, ...]
    ts_ms: float | None
    source_id: str | None  # `event_id`; a `.n` suffix marks a second envelope of one source
    event: str
    error: str | None  # `failed` only: the exception's message (its type is not sent)


class V2MessageEvent(NamedTuple):
    """One event of the `messages` channel (one LLM call: `message-start`, content blocks,
    `message-finish`). Deltas carry no message id (docs/V2.md §3)."""

    namespace: tuple[str, ...]
    ts_ms: float | None
    source_id: str | None
    event: str  # message-start, content-block-start/-delta/-finish, message-finish
    msg_id: str | None  # message-start only
    is_token: bool  # content the user sees: non-empty text, reasoning or tool-call chunk
    text: str  # text this event adds (content expectations)
    model: str | None  # message-finish only
    provider: str | None  # message-finish only
    output_tokens: int | None  # message-finish `usage.output_tokens`
    finish_reason: str | None


class V2Values(NamedTuple):
    """`values`: the state after a superstep of the graph in `namespace` (its payload dropped).
    At the root it is the only sign on the wire that a new superstep (a new node) begins."""

    namespace: tuple[str, ...]
    ts_ms: float | None
    source_id: str | None


class V2Other(NamedTuple):
    """Any other channel (`updates`, `custom`, `tools`, ...): counted, not interpreted."""

    method: str
    namespace: tuple[str, ...]
    ts_ms: float | None
    source_id: str | None


V2Event = V2Lifecycle | V2MessageEvent | V2Values | V2Other


def derived(source_id: str | None) -> bool:
    """Whether an envelope is a second or later one made from the same source event as the
    envelope before it (`1795985071013-0.1`, docs/V2.md §2). Only the suffix says so: the
    in-memory server gives different source events of one millisecond the same id."""
    return source_id is not None and "." in source_id.rpartition("-")[2]


def namespace_node(namespace: tuple[str, ...]) -> tuple[str, str | None]:
    """`("research:<id>", "inner:<id2>")` -> (`research/inner`, `<id2>`); `()` -> (`""`, None).

    v2 names no node inside a namespace, so a call inside a subgraph is attributed to the
    subgraph's node in its parent (docs/V2.md §3).
    """
    if not namespace:
        return "", None
    return node_path("|".join(namespace))


def _namespace(name: str, raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise StreamProtocolError(f"event {name!r}: namespace is not a list of strings")
    return tuple(sys.intern(p) for p in raw)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _message(name: str, ns: tuple[str, ...], ts: float | None, sid: str | None, d: Any) -> Any:
    if not isinstance(d, dict) or not isinstance(d.get("event"), str):
        raise StreamProtocolError(f"event {name!r}: expected a message event object")
    kind = d["event"]
    msg_id: str | None = None
    text = ""
    is_token = False
    model = provider = finish_reason = None
    output_tokens: int | None = None
    if kind == "message-start":
        raw_id = d.get("id")
        msg_id = raw_id if isinstance(raw_id, str) else None
    elif kind == "content-block-start":
        block = d.get("content")
        if isinstance(block, dict):
            btype = block.get("type")
            text = _text(block.get("text")) if btype == "text" else ""
            # A tool call's first visible output is its block start: name and id, no args yet
            # (docs/V2.md §3), as the first tool-call chunk is a token on the legacy stream.
            is_token = bool(
                text
                or _text(block.get("reasoning"))
                or (
                    isinstance(btype, str)
                    and btype.startswith("tool_call")
                    and (block.get("name") or block.get("args"))
                )
            )
    elif kind == "content-block-delta":
        delta = d.get("delta")
        if isinstance(delta, dict):
            text = _text(delta.get("text")) if delta.get("type") == "text-delta" else ""
            is_token = bool(text or _text(delta.get("reasoning")) or _text(delta.get("args")))
    elif kind == "message-finish":
        usage = d.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("output_tokens"), int):
            output_tokens = usage["output_tokens"]
        meta = d.get("metadata")
        if isinstance(meta, dict):
            m, p, r = meta.get("model_name"), meta.get("model_provider"), meta.get("finish_reason")
            model = m if isinstance(m, str) else None
            provider = p if isinstance(p, str) else None
            finish_reason = r if isinstance(r, str) else None
    return V2MessageEvent(
        ns, ts, sid, kind, msg_id, is_token, text, model, provider, output_tokens, finish_reason
    )


def decode_v2_event(name: str, data: bytes) -> V2Event:
    """Decode one SSE event of a v2 stream (`POST /threads/{tid}/stream/events`).

    The SSE event name is the envelope's method; the envelope is authoritative. Raises
    `StreamProtocolError` on bad JSON, on an envelope that is not `type: event`, or on a
    message or lifecycle event of the wrong shape.
    """
    env = _loads(name, data)
    if not isinstance(env, dict) or env.get("type") != "event":
        raise StreamProtocolError(
            f"event {name!r}: expected a v2 envelope with type 'event', got {str(env)[:80]!r}",
            phase="stream",
        )
    method = env.get("method")
    params = env.get("params")
    if not isinstance(method, str) or not isinstance(params, dict):
        raise StreamProtocolError(f"event {name!r}: envelope without method or params")
    ns = _namespace(name, params.get("namespace"))
    raw_ts = params.get("timestamp")
    ts = float(raw_ts) if isinstance(raw_ts, int | float) and not isinstance(raw_ts, bool) else None
    raw_id = env.get("event_id")
    sid = raw_id if isinstance(raw_id, str) else None
    d = params.get("data")
    if method == "messages":
        result: V2Event = _message(name, ns, ts, sid, d)
        return result
    if method == "lifecycle":
        if not isinstance(d, dict) or not isinstance(d.get("event"), str):
            raise StreamProtocolError(f"event {name!r}: expected a lifecycle object")
        err = d.get("error")
        return V2Lifecycle(ns, ts, sid, d["event"], err if isinstance(err, str) else None)
    if method == "values":
        return V2Values(ns, ts, sid)
    return V2Other(sys.intern(method), ns, ts, sid)
