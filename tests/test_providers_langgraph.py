"""Probes of graphs that call the real `langchain-openai` and `langchain-anthropic` integrations
(demo/provider_graphs.py) on a real `langgraph dev`, against the scripted provider API that
DevServer starts (demo/provider_api.py). The chunk shapes are the ones production servers send
(demo/PROVIDERS.md); the timings are the provider's configured ones.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from exporter.config import Target
from exporter.core.result import NodeExecution, ProbeResult
from exporter.probe import probe

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.timing]

FIRST_S, ANSWER_S, GAP_S = 0.150, 0.600, 0.025
#: The integrations parse and re-emit every provider event; the first output reaches us a few
#: ms after the provider sent it (demo/PROVIDERS.md). Lower bounds stay hard.
SLACK_S = 0.020
TIMING = {"first_output_s": FIRST_S, "answer_s": ANSWER_S, "gap_s": GAP_S}


async def probe_graph(url: str, graph: str) -> ProbeResult:
    target = Target.model_validate(
        {
            "name": graph,
            "url": url,
            "assistant_id": graph,
            "input": {"messages": [{"role": "human", "content": "what's the weather in sf?"}]},
            "config": {"configurable": TIMING},
        }
    )
    # The first Responses API call after a server start pays a one-off set-up (PROVIDERS.md).
    await probe(target)
    return await probe(target)


def llm_nodes(result: ProbeResult) -> list[NodeExecution]:
    return [n for n in result.nodes if n.tokens]


def measured(node: NodeExecution) -> str:
    calls = ", ".join(f"{c.tokens} tok tpot {c.tpot_s} {c.tpot_basis()}" for c in node.calls)
    return (
        f"{node.node}: ttft {node.ttft_s}, answer {node.answer_ttft_s}, "
        f"itl median {statistics.median(node.itl_s()) if node.itl_s() else None}, {calls}"
    )


@pytest.mark.parametrize("graph", ["anthropic_thinking", "openai_responses"])
async def test_reasoning_graph_ttft_is_the_first_reasoning_chunk(
    langgraph_dev: Any, graph: str
) -> None:
    """Reasoning at 150 ms, answer at 600 ms, 25 ms gaps: node TTFT 150 ms, answer TTFT 600 ms,
    32 tokens (12 reasoning), TPOT 25 ms, and the reasoning->answer pause in ITL."""
    result = await probe_graph(langgraph_dev.url, graph)
    assert result.failure is None, result.failure
    (node,) = llm_nodes(result)
    why = measured(node)
    assert node.ttft_s is not None and FIRST_S - 0.001 <= node.ttft_s <= FIRST_S + SLACK_S, why
    assert node.answer_ttft_s is not None, why
    assert ANSWER_S - 0.001 <= node.answer_ttft_s <= ANSWER_S + SLACK_S, why
    assert (node.tokens, node.reasoning_tokens) == (32, 12), why
    (call,) = node.calls
    assert call.tpot_s is not None and abs(call.tpot_s - GAP_S) <= 0.003, why
    assert abs(statistics.median(node.itl_s()) - GAP_S) <= 0.003, why
    assert max(node.itl_s()) >= 0.150, why  # the switch from reasoning to answer
    assert result.answer_ttft_s is not None and result.ttft_s is not None
    assert result.answer_ttft_s - result.ttft_s >= 0.440, why


@pytest.mark.parametrize("graph", ["openai_chat", "anthropic_tools"])
async def test_answer_graph_node_ttft_and_itl_match_the_provider(
    langgraph_dev: Any, graph: str
) -> None:
    """Chat completions and tool use: every LLM node's TTFT and median ITL match the
    provider's configured timings; the empty first tool-argument fragment is not a token."""
    result = await probe_graph(langgraph_dev.url, graph)
    assert result.failure is None, result.failure
    nodes = llm_nodes(result)
    assert nodes
    for node in nodes:
        why = measured(node)
        assert node.ttft_s is not None and node.ttft_s >= FIRST_S - 0.001, why
        assert node.ttft_s <= FIRST_S + SLACK_S, why
        assert abs(statistics.median(node.itl_s()) - GAP_S) <= 0.003, why
        assert node.reasoning_tokens == 0, why
    if graph == "anthropic_tools":
        (call,) = nodes[0].calls
        assert call.tokens == call.output_tokens == 11, measured(nodes[0])
