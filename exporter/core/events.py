"""Typed LangGraph stream events, decoded from one SSE event's name and data. Pure: no I/O.

Events are NamedTuples: immutable, and several times cheaper to build than frozen dataclasses
on a path that runs for every token (docs/PERFORMANCE.md). Only what the timing model needs is
kept; the rest of each payload (the ~0.7 KB metadata dict repeated in every token, the node
input carried by `tasks` starts; docs/WIRE.md §3) is dropped here.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NamedTuple

import orjson

from exporter.core.errors import StreamProtocolError

__all__ = [
    "End",
    "LangGraphEvent",
    "Message",
    "Metadata",
    "Other",
    "RunError",
    "TaskEnd",
    "TaskStart",
    "decode_event",
    "node_path",
]


class Metadata(NamedTuple):
    """First event of every run, sent when a worker picks the run up (docs/WIRE.md §2)."""

    run_id: str | None
    attempt: int | None


class Message(NamedTuple):
    """One `messages` tuple: a streamed chunk (`AIMessageChunk`) or a whole node-output message."""

    msg_id: str
    node: str  # namespace path without task ids: `research/inner_agent` (docs/WIRE.md §7)
    langgraph_node: str | None  # the raw metadata value (inner node name inside a subgraph)
    task_id: str | None  # last `:`-suffix of `langgraph_checkpoint_ns` (docs/WIRE.md §4)
    is_chunk: bool  # AIMessageChunk: part of a streamed LLM call
    is_token: bool  # a chunk with text or tool-call chunks (docs/WIRE.md §17); empty chunks are not
    is_last: bool  # `chunk_position: "last"`: langchain-core's end-of-call marker (docs/WIRE.md §5)
    text: str  # the text this chunk adds (for content expectations)
    model: str | None
    provider: str | None
    output_tokens: int | None  # from `usage_metadata`, when this chunk carries it


class TaskStart(NamedTuple):
    """`tasks` event with `input`: a node execution starts (docs/WIRE.md §5)."""

    task_id: str
    node: str


class TaskEnd(NamedTuple):
    """`tasks` event with `result` or `error`: a node execution ends."""

    task_id: str
    node: str
    error_type: str | None


class RunError(NamedTuple):
    """`event: error` inside HTTP 200 (docs/WIRE.md §8). The message may be masked by the server."""

    error_type: str
    message: str


class End(NamedTuple):
    """`event: end`: not sent by current servers, accepted from older ones (docs/WIRE.md §2)."""


class Other(NamedTuple):
    """Any other event (updates, values, debug, ...): counted, not interpreted."""

    name: str


LangGraphEvent = Metadata | Message | TaskStart | TaskEnd | RunError | End | Other


#: Every token of a node execution carries the same checkpoint namespace: parse each one once.
_NODE_PATHS: dict[str, tuple[str, str | None]] = {}
_NODE_PATHS_MAX = 4096


def node_path(checkpoint_ns: str) -> tuple[str, str | None]:
    """`research:<id>|inner_agent:<id>` -> (`research/inner_agent`, `<inner task id>`)."""
    cached = _NODE_PATHS.get(checkpoint_ns)
    if cached is not None:
        return cached
    if len(_NODE_PATHS) >= _NODE_PATHS_MAX:
        _NODE_PATHS.clear()  # bounded: task ids are unique, so old entries are never hit again
    path = _node_path(checkpoint_ns)
    _NODE_PATHS[checkpoint_ns] = path
    return path


def _node_path(checkpoint_ns: str) -> tuple[str, str | None]:
    names: list[str] = []
    task_id: str | None = None
    for part in checkpoint_ns.split("|"):
        name, sep, tid = part.rpartition(":")
        if not sep:
            name, tid = part, ""
        names.append(name)
        task_id = tid or None
    return sys.intern("/".join(names)), task_id


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Content blocks (some providers, output_version="v1"; docs/WIRE.md §5).
        parts: list[str] = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                text = block.get("text")
                if isinstance(text, str):
                    parts.append(text)
        return "".join(parts)
    return ""


#: Above this size an event's JSON is parsed by the stdlib: orjson's parser peaks at about 13x
#: the input (130 MB for one 10 MB token), the stdlib's at 2-5x (memory must stay bounded).
LARGE_EVENT_BYTES = 1024 * 1024


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # as orjson: NaN and Infinity are not JSON


def _parse(data: bytes) -> Any:
    """JSON from an event's data; raises ValueError (or RecursionError) when it is not JSON."""
    if len(data) <= LARGE_EVENT_BYTES:
        return orjson.loads(data)
    # NOTE: decode first: given bytes, json.loads would also accept UTF-16/32, orjson does not.
    return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)


def _loads(name: str, data: bytes) -> Any:
    try:
        return _parse(data)
    except (ValueError, RecursionError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise StreamProtocolError(
            f"event {name!r}: data is not JSON: {data[:80]!r}", phase="stream"
        ) from exc


def _message(name: str, ns_names: list[str], payload: Any) -> Message:
    if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], dict)):
        raise StreamProtocolError(
            f"event {name!r}: expected [message, metadata], got {str(payload)[:80]!r}",
            phase="stream",
        )
    msg, meta = payload
    if not isinstance(meta, dict):
        meta = {}
    lg_node = meta.get("langgraph_node")
    cns = meta.get("langgraph_checkpoint_ns")
    if isinstance(cns, str) and cns:
        node, task_id = node_path(cns)
    else:
        node = "/".join([*ns_names, lg_node]) if isinstance(lg_node, str) else "/".join(ns_names)
        task_id = None
    is_chunk = msg.get("type") == "AIMessageChunk"
    text = _text_of(msg.get("content"))
    tool_chunks = msg.get("tool_call_chunks")
    usage = msg.get("usage_metadata")
    output_tokens = usage.get("output_tokens") if isinstance(usage, dict) else None
    model = meta.get("ls_model_name")
    provider = meta.get("ls_provider")
    msg_id = msg.get("id")
    return Message(
        msg_id=msg_id if isinstance(msg_id, str) else "",
        # Interned: a result keeps the node of every event, and a graph has few nodes.
        node=sys.intern(node) if node else "__unknown__",
        langgraph_node=sys.intern(lg_node) if isinstance(lg_node, str) else None,
        task_id=task_id,
        is_chunk=is_chunk,
        is_token=is_chunk and (bool(text) or bool(tool_chunks)),
        is_last=msg.get("chunk_position") == "last",
        text=text,
        model=model if isinstance(model, str) else None,
        provider=provider if isinstance(provider, str) else None,
        output_tokens=output_tokens if isinstance(output_tokens, int) else None,
    )


def _task(name: str, ns_names: list[str], payload: Any) -> TaskStart | TaskEnd:
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
        raise StreamProtocolError(
            f"event {name!r}: expected a task object with an id", phase="stream"
        )
    task_name = payload.get("name")
    node = "/".join([*ns_names, task_name if isinstance(task_name, str) else "__unknown__"])
    if "input" in payload:
        return TaskStart(payload["id"], node)
    error = payload.get("error")
    if isinstance(error, dict):
        error_type: str | None = str(error.get("error") or "Error")
    elif error:
        error_type = "Error"
    else:
        error_type = None
    return TaskEnd(payload["id"], node, error_type)


def decode_event(name: str, data: bytes) -> LangGraphEvent:
    """Decode one SSE event into a LangGraph event.

    Names may carry a namespace, `messages|research:<task id>` (docs/WIRE.md §7): match the prefix.
    Raises `StreamProtocolError` on bad JSON or a wrong shape, and nothing for an `error`
    event is a value here; the prober decides it ends the run).
    """
    base, _, ns = name.partition("|")
    ns_names = [node_path(part)[0] for part in ns.split("|")] if ns else []
    if base == "messages":
        return _message(name, ns_names, _loads(name, data))
    if base == "tasks":
        return _task(name, ns_names, _loads(name, data))
    if base == "metadata":
        payload = _loads(name, data)
        if not isinstance(payload, dict):
            raise StreamProtocolError("metadata event is not an object", phase="stream")
        run_id = payload.get("run_id")
        attempt = payload.get("attempt")
        return Metadata(
            run_id if isinstance(run_id, str) else None,
            attempt if isinstance(attempt, int) else None,
        )
    if base == "error":
        try:
            payload = _parse(data)
        except (ValueError, RecursionError):
            payload = {"error": "Error", "message": data[:500].decode("utf-8", "replace")}
        if not isinstance(payload, dict):
            payload = {"error": "Error", "message": str(payload)[:500]}
        return RunError(str(payload.get("error") or "Error"), str(payload.get("message") or ""))
    if base == "end":
        return End()
    return Other(base)
