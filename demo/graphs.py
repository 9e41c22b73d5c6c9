"""Demo graphs with a fake streaming model, for probing a real LangGraph API server.

Graph ids (langgraph.json) and the LLM nodes' default delays in seconds
(first = before the first chunk, gap = between chunks):

============  =====================================================  ===========  =====  =====
graph         shape                                                  LLM node     first  gap
============  =====================================================  ===========  =====  =====
agent         agent (streams a get_weather tool call) -> action      agent        0.200  0.030
              (ToolNode) -> agent (streams "It's 60 degrees and
              foggy ...")
parallel      writer_a and writer_b stream concurrently in one       writer_a     0.100  0.030
              superstep -> merge (plain AIMessage, no LLM)           writer_b     0.200  0.045
nested        prepare -> research (compiled subgraph whose LLM       inner_agent  0.150  0.020
              node is inner_agent) -> answer                         answer       0.100  0.030
boom          agent; the model raises RuntimeError instead of        agent        0.100  0.030
              its 6th chunk (5 chunks streamed)
boom_custom   agent; the model raises ProviderRateLimitError (not a  agent        0.100  0.030
              builtin: the server masks it) after 3 chunks
slow          agent; first token after 7 s, longer than the 5 s      agent        7.000  0.030
              heartbeat (docs/WIRE.md §2), then "Sorry for the wait."
============  =====================================================  ===========  =====  =====

Overrides, per request (``config.configurable``) or per server process (``DEMO_*``
environment variables): see ``fake_model`` and README.md. Env knobs are keyed by
node name only, so ``DEMO_AGENT_FIRST_TOKEN_S`` also changes ``boom`` and ``slow``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

from fake_model import FakeStreamingChatModel, Timing, resolve_timing
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode


class Node(Protocol):
    # Named parameters: LangGraph passes the config only to a parameter called `config`.
    def __call__(
        self, state: MessagesState, config: RunnableConfig
    ) -> Awaitable[dict[str, Any]]: ...


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    if city.lower() in ("sf", "san francisco"):
        return "It's 60 degrees and foggy."
    return "It's 90 degrees and sunny."


def llm_node(name: str, model: FakeStreamingChatModel, default: Timing) -> Node:
    """A node that streams one call of ``model``, with delays resolved per request."""

    async def node(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        # Passing config explicitly keeps the streaming callbacks attached; the delays
        # travel as call kwargs down to FakeStreamingChatModel._astream.
        timing = resolve_timing(name, default, config.get("configurable"))
        reply = await model.ainvoke(
            state["messages"],
            config,
            first_token_s=timing.first_token_s,
            token_gap_s=timing.token_gap_s,
        )
        return {"messages": [reply]}

    node.__name__ = name
    return node


def _route(state: MessagesState) -> str:
    last = state["messages"][-1]
    return "action" if isinstance(last, AIMessage) and last.tool_calls else END


def make_react(
    model: FakeStreamingChatModel, default: Timing
) -> CompiledStateGraph[Any, Any, Any, Any]:
    g = StateGraph(MessagesState)
    g.add_node("agent", llm_node("agent", model, default))
    g.add_node("action", ToolNode([get_weather]))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", _route, ["action", END])
    g.add_edge("action", "agent")
    return g.compile()


# ------------------------------------------------------------------ agent, boom, boom_custom, slow
agent_graph = make_react(
    FakeStreamingChatModel(tool_name="get_weather", tool_args={"city": "sf"}),
    Timing(0.200, 0.030),
)
boom_graph = make_react(
    FakeStreamingChatModel(model_name="fake-boom", fail_after=5), Timing(0.100, 0.030)
)
boom_custom_graph = make_react(
    FakeStreamingChatModel(model_name="fake-boom-custom", fail_after=3, fail_custom=True),
    Timing(0.100, 0.030),
)
slow_graph = make_react(
    FakeStreamingChatModel(model_name="fake-slow", final_text="Sorry for the wait."),
    Timing(7.000, 0.030),
)

# ------------------------------------------------------------------ parallel


async def merge(state: MessagesState) -> dict[str, Any]:
    # A node output that is not streamed: reaches the client as one whole "ai" message.
    return {"messages": [AIMessage(content="merged", id="merge-msg-1")]}


_p = StateGraph(MessagesState)
_p.add_node(
    "writer_a",
    llm_node(
        "writer_a",
        FakeStreamingChatModel(
            model_name="fake-a", final_text="alpha one two three four five six seven eight nine"
        ),
        Timing(0.100, 0.030),
    ),
)
_p.add_node(
    "writer_b",
    llm_node(
        "writer_b",
        FakeStreamingChatModel(
            model_name="fake-b", final_text="beta uno dos tres cuatro cinco seis siete"
        ),
        Timing(0.200, 0.045),
    ),
)
_p.add_node("merge", merge)
_p.add_edge(START, "writer_a")
_p.add_edge(START, "writer_b")
_p.add_edge(["writer_a", "writer_b"], "merge")
_p.add_edge("merge", END)
parallel_graph = _p.compile()

# ------------------------------------------------------------------ nested (subgraph)
_s = StateGraph(MessagesState)
_s.add_node(
    "inner_agent",
    llm_node(
        "inner_agent",
        FakeStreamingChatModel(
            model_name="fake-inner", final_text="inner research notes: fog likely"
        ),
        Timing(0.150, 0.020),
    ),
)
_s.add_edge(START, "inner_agent")
_s.add_edge("inner_agent", END)
research_subgraph = _s.compile()


async def prepare(state: MessagesState) -> dict[str, Any]:
    # Non-LLM work before the subgraph, so node durations differ from LLM time.
    await asyncio.sleep(0.05)
    return {}


_n = StateGraph(MessagesState)
_n.add_node("prepare", prepare)
_n.add_node("research", research_subgraph)  # the compiled subgraph is the node itself
_n.add_node(
    "answer",
    llm_node(
        "answer",
        FakeStreamingChatModel(model_name="fake-outer", final_text="Final: bring a jacket"),
        Timing(0.100, 0.030),
    ),
)
_n.add_edge(START, "prepare")
_n.add_edge("prepare", "research")
_n.add_edge("research", "answer")
_n.add_edge("answer", END)
nested_graph = _n.compile()
