"""A fake token-streaming chat model and its timing knobs, for the demo graphs.

No network: every "token" is produced locally with a real ``asyncio.sleep`` before
it, so the time to first token and the gaps a client sees are genuine (docs/WIRE.md §14:
the server adds about 1.3 ms).

Timing resolution (first match wins), see ``resolve_timing``:

1. request config, per node:  ``configurable.nodes.<node>.first_token_s`` / ``token_gap_s``
2. request config, all nodes: ``configurable.first_token_s`` / ``token_gap_s``
3. environment, per node:     ``DEMO_<NODE>_FIRST_TOKEN_S`` / ``DEMO_<NODE>_TOKEN_GAP_S``
4. environment, all nodes:    ``DEMO_FIRST_TOKEN_S`` / ``DEMO_TOKEN_GAP_S``
5. the graph's default for that node.

The two values are resolved independently, so a request may override only the gap.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field


@dataclass(frozen=True)
class Timing:
    """Delays of one LLM call, in seconds."""

    first_token_s: float
    token_gap_s: float


_KNOBS = ("first_token_s", "token_gap_s")


def _seconds(value: object, where: str) -> float:
    # A bad knob must fail loudly (the run ends with `event: error`) rather than
    # silently fall back to a default and make a timing test pass for the wrong reason.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{where}: expected seconds as a number, got {value!r}")
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{where}: expected seconds as a number, got {value!r}") from None
    if not 0.0 <= seconds <= 600.0:
        raise ValueError(f"{where}: {seconds} s is outside 0..600 s")
    return seconds


def resolve_timing(
    node: str,
    default: Timing,
    configurable: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Timing:
    """Return the delays for one call of ``node`` (order in the module docstring)."""
    conf = configurable or {}
    env = os.environ if environ is None else environ
    nodes = conf.get("nodes") or {}
    if not isinstance(nodes, Mapping):
        raise ValueError(f"configurable.nodes: expected an object, got {nodes!r}")
    per_node = nodes.get(node) or {}
    if not isinstance(per_node, Mapping):
        raise ValueError(f"configurable.nodes.{node}: expected an object, got {per_node!r}")
    values: dict[str, float] = {}
    for knob in _KNOBS:
        env_node = f"DEMO_{node.upper()}_{knob.upper()}"
        env_all = f"DEMO_{knob.upper()}"
        if per_node.get(knob) is not None:
            values[knob] = _seconds(per_node[knob], f"configurable.nodes.{node}.{knob}")
        elif conf.get(knob) is not None:
            values[knob] = _seconds(conf[knob], f"configurable.{knob}")
        elif env.get(env_node):
            values[knob] = _seconds(env[env_node], env_node)
        elif env.get(env_all):
            values[knob] = _seconds(env[env_all], env_all)
        else:
            values[knob] = getattr(default, knob)
    return Timing(**values)


class ProviderRateLimitError(Exception):
    """Stands in for a provider SDK exception (e.g. openai.RateLimitError).

    It is not a builtin, so the server masks its message (docs/WIRE.md §8).
    """


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [parts[0]] + [" " + p for p in parts[1:]]


class FakeStreamingChatModel(BaseChatModel):
    """Streams either a tool call (as tool_call_chunks) or a text answer, word by word.

    If ``tool_name`` is set and the last message is not a ToolMessage, it streams a
    tool call; otherwise it streams ``final_text``. The last chunk it yields is an
    OpenAI-style usage-only chunk (no content, ``usage_metadata`` and
    ``finish_reason``); langchain-core then appends the empty
    ``chunk_position: "last"`` chunk by itself (docs/WIRE.md §5).
    ``first_token_s``/``token_gap_s`` can be overridden per call as ``ainvoke`` kwargs.
    """

    model_name: str = "fake-stream-1"
    provider: str = "fakeprovider"
    first_token_s: float = 0.200
    token_gap_s: float = 0.030
    final_text: str = "It's 60 degrees and foggy in San Francisco, with a light breeze."
    tool_name: str | None = None
    tool_args: dict[str, Any] = Field(default_factory=dict)
    fail_after: int | None = None  # raise instead of yielding chunk number `fail_after` (0-based)
    fail_custom: bool = False  # raise ProviderRateLimitError instead of RuntimeError

    @property
    def _llm_type(self) -> str:
        return "fake-streaming-chat"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        # These become ls_provider / ls_model_name in every token's metadata (docs/WIRE.md §4).
        return LangSmithParams(
            ls_provider=self.provider,
            ls_model_name=self.model_name,
            ls_model_type="chat",
            ls_temperature=0.0,
        )

    def _plan(self, messages: list[BaseMessage]) -> list[AIMessageChunk]:
        last = messages[-1] if messages else None
        chunks: list[AIMessageChunk] = []
        n_in = sum(len(str(m.content).split()) for m in messages) + 5
        if self.tool_name and not isinstance(last, ToolMessage):
            call_id = "call_" + uuid.uuid4().hex[:12]
            args = json.dumps(self.tool_args or {"city": "sf"})
            chunks.append(
                AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        {
                            "name": self.tool_name,
                            "args": "",
                            "id": call_id,
                            "index": 0,
                            "type": "tool_call_chunk",
                        }
                    ],
                )
            )
            for i in range(0, len(args), 4):
                chunks.append(
                    AIMessageChunk(
                        content="",
                        tool_call_chunks=[
                            {
                                "name": None,
                                "args": args[i : i + 4],
                                "id": None,
                                "index": 0,
                                "type": "tool_call_chunk",
                            }
                        ],
                    )
                )
            finish = "tool_calls"
        else:
            chunks.extend(AIMessageChunk(content=w) for w in _words(self.final_text))
            finish = "stop"
        n_out = len(chunks)
        meta = {
            "finish_reason": finish,
            "model_name": self.model_name,
            "model_provider": self.provider,
        }
        usage = {"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}
        # OpenAI style: a trailing chunk with no content that carries usage and finish_reason.
        chunks.append(AIMessageChunk(content="", usage_metadata=usage, response_metadata=meta))
        return chunks

    def _fail(self, i: int) -> None:
        if self.fail_custom:
            raise ProviderRateLimitError(f"429 simulated rate limit after {i} chunks")
        raise RuntimeError(f"simulated provider failure after {i} chunks")

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # Used only when nobody streams (stream_mode "values", docs/WIRE.md §3): answers at once.
        if self.fail_after is not None:
            self._fail(0)
        chunks = self._plan(messages)
        msg = chunks[0]
        for c in chunks[1:]:
            msg = msg + c
        whole = AIMessage(**msg.model_dump(exclude={"type", "tool_call_chunks", "chunk_position"}))
        return ChatResult(generations=[ChatGeneration(message=whole)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        *,
        first_token_s: float | None = None,
        token_gap_s: float | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        first = self.first_token_s if first_token_s is None else first_token_s
        gap = self.token_gap_s if token_gap_s is None else token_gap_s
        for i, chunk in enumerate(self._plan(messages)):
            await asyncio.sleep(first if i == 0 else gap)
            if self.fail_after is not None and i == self.fail_after:
                self._fail(i)
            yield ChatGenerationChunk(message=chunk)
