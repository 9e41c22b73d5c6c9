"""Demo graphs that call the real ``langchain-openai`` / ``langchain-anthropic`` chat models.

They talk to the scripted provider API (``provider_api.py``) at ``$DEMO_PROVIDER_URL``, which
``devserver.py`` starts next to ``langgraph dev``; the API keys are dummy strings. So the
chunks on the LangGraph wire are exactly what the real integrations make of the real APIs'
stream shapes (see PROVIDERS.md), with known timings.

==================  ===================================================  ==================
graph               shape                                                model
==================  ===================================================  ==================
openai_chat         llm: ChatOpenAI, Chat Completions, stream_usage      gpt-4o-mini
openai_responses    llm: ChatOpenAI, Responses API, reasoning            gpt-5-mini
                    ``{"effort": "low", "summary": "auto"}``
anthropic_thinking  llm: ChatAnthropic, ``thinking`` enabled              claude-sonnet-4-6
                    (budget 1024 tokens)
anthropic_tools     agent (ChatAnthropic + get_weather tool) -> action   claude-sonnet-4-6
                    (ToolNode) -> agent
==================  ===================================================  ==================

Per request, ``config.configurable`` may set the provider's timings and counts, sent to it as
``x-script-*`` headers (``default_headers`` of the model): ``first_output_s`` (first output
delta, reasoning if any; default 0.150), ``answer_s`` (first answer text after reasoning;
0.600), ``gap_s`` (between deltas; 0.025), ``preamble_s``, ``n_reasoning``, ``n_text``,
``n_pre``, ``n_args``, ``reasoning_tokens`` (provider_api.py). Also ``reasoning_effort``
(openai_responses, default "low"), ``budget_tokens`` (anthropic_thinking, default 1024) and
``output_version`` (every graph: the integration's ``output_version``, e.g. ``"v0"`` or
``"v1"``; unset, the integration's default, ``"responses/v1"`` for the Responses API).
Unset knobs fall back to the provider process's ``PROVIDER_API_*`` env, then its defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from langchain_anthropic import ChatAnthropic
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode

OPENAI_KEY = "sk-demo-not-a-real-key"
ANTHROPIC_KEY = "sk-ant-demo-not-a-real-key"
_SECONDS = ("first_output_s", "answer_s", "gap_s", "preamble_s")
_COUNTS = ("n_reasoning", "n_text", "n_pre", "n_args", "reasoning_tokens")

# One model object per (graph, base URL, headers): construction and HTTP clients are reused.
_MODELS: dict[tuple[Any, ...], Runnable[Any, Any]] = {}


def provider_url() -> str:
    url = os.environ.get("DEMO_PROVIDER_URL", "").rstrip("/")
    if not url:
        raise RuntimeError(
            "DEMO_PROVIDER_URL is not set: start the server with demo/devserver.py, which "
            "runs the scripted provider API (demo/provider_api.py) and sets it"
        )
    return url


def script_headers(configurable: Mapping[str, Any] | None) -> dict[str, str]:
    """``x-script-*`` headers for the provider from ``config.configurable`` (bad values raise)."""
    conf = configurable or {}
    headers: dict[str, str] = {}
    for key in (*_SECONDS, *_COUNTS):
        value = conf.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"configurable.{key}: expected a number, got {value!r}")
        try:
            number = float(value) if key in _SECONDS else int(value)
        except ValueError:
            raise ValueError(f"configurable.{key}: expected a number, got {value!r}") from None
        if not 0 <= number <= 600:
            raise ValueError(f"configurable.{key}: {number} is outside 0..600")
        headers["x-script-" + key.replace("_", "-")] = str(number)
    return headers


def _model(kind: str, configurable: Mapping[str, Any] | None) -> Runnable[Any, Any]:
    conf = configurable or {}
    url = provider_url()
    headers = script_headers(conf)
    effort = str(conf.get("reasoning_effort") or "low")
    budget = int(conf.get("budget_tokens") or 1024)
    version = conf.get("output_version")
    extra: dict[str, Any] = {} if version is None else {"output_version": str(version)}
    key = (kind, url, tuple(sorted(headers.items())), effort, budget, version)
    if key in _MODELS:
        return _MODELS[key]
    model: Runnable[Any, Any]
    if kind == "openai_chat":
        model = ChatOpenAI(
            model="gpt-4o-mini",
            base_url=url + "/v1",
            api_key=OPENAI_KEY,
            stream_usage=True,
            default_headers=headers,
            max_retries=0,
            **extra,
        )
    elif kind == "openai_responses":
        model = ChatOpenAI(
            model="gpt-5-mini",
            base_url=url + "/v1",
            api_key=OPENAI_KEY,
            use_responses_api=True,
            reasoning={"effort": effort, "summary": "auto"},
            default_headers=headers,
            max_retries=0,
            **extra,
        )
    elif kind == "anthropic_thinking":
        model = ChatAnthropic(
            model_name="claude-sonnet-4-6",
            base_url=url,
            api_key=ANTHROPIC_KEY,
            max_tokens=budget + 1024,
            thinking={"type": "enabled", "budget_tokens": budget},
            default_headers=headers,
            max_retries=0,
            timeout=None,
            stop=None,
            **extra,
        )
    elif kind == "anthropic_tools":
        chat: BaseChatModel = ChatAnthropic(
            model_name="claude-sonnet-4-6",
            base_url=url,
            api_key=ANTHROPIC_KEY,
            max_tokens=1024,
            default_headers=headers,
            max_retries=0,
            timeout=None,
            stop=None,
            **extra,
        )
        model = chat.bind_tools([get_weather])
    else:
        raise ValueError(kind)
    _MODELS[key] = model
    return model


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"It's 60 degrees and foggy in {city}."


def llm_node(kind: str) -> Any:
    async def node(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        # config is passed on so the streaming callbacks stay attached to the model call.
        reply = await _model(kind, config.get("configurable")).ainvoke(state["messages"], config)
        return {"messages": [reply]}

    node.__name__ = kind
    return node


def single(kind: str) -> CompiledStateGraph[Any, Any, Any, Any]:
    g = StateGraph(MessagesState)
    g.add_node("llm", llm_node(kind))
    g.add_edge(START, "llm")
    g.add_edge("llm", END)
    return g.compile()


def _route(state: MessagesState) -> str:
    last = state["messages"][-1]
    return "action" if isinstance(last, AIMessage) and last.tool_calls else END


def react(kind: str) -> CompiledStateGraph[Any, Any, Any, Any]:
    g = StateGraph(MessagesState)
    g.add_node("agent", llm_node(kind))
    g.add_node("action", ToolNode([get_weather]))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", _route, ["action", END])
    g.add_edge("action", "agent")
    return g.compile()


openai_chat_graph = single("openai_chat")
openai_responses_graph = single("openai_responses")
anthropic_thinking_graph = single("anthropic_thinking")
anthropic_tools_graph = react("anthropic_tools")
