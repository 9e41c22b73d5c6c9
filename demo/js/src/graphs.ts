/**
 * JS twins of demo/graphs.py: same graph ids, node names, shapes, texts and default delays
 * in seconds (first = before the first chunk, gap = between chunks).
 *
 * graph        shape                                                   LLM node     first  gap
 * agent        agent (streams a get_weather tool call) -> action       agent        0.200  0.030
 *              (ToolNode) -> agent (streams "It's 60 degrees and
 *              foggy ...")
 * parallel     writer_a and writer_b stream concurrently in one        writer_a     0.100  0.030
 *              superstep -> merge (plain AIMessage, no LLM)            writer_b     0.200  0.045
 * nested       prepare -> research (compiled subgraph whose LLM        inner_agent  0.150  0.020
 *              node is inner_agent) -> answer                          answer       0.100  0.030
 * boom         agent; the model throws Error instead of its 6th        agent        0.100  0.030
 *              chunk (5 chunks streamed)
 * boom_custom  agent; the model throws ProviderRateLimitError after    agent        0.100  0.030
 *              3 chunks
 * slow         agent; first token after 7 s, then "Sorry for the       agent        7.000  0.030
 *              wait."
 *
 * Overrides per request (`config.configurable`) or per server process (`DEMO_*` environment
 * variables): see fake_model.ts.
 */

import { AIMessage } from "@langchain/core/messages";
import type { RunnableConfig } from "@langchain/core/runnables";
import { tool } from "@langchain/core/tools";
import { END, MessagesAnnotation, START, StateGraph } from "@langchain/langgraph";
import { ToolNode } from "@langchain/langgraph/prebuilt";
import { z } from "zod";

import { FakeStreamingChatModel, resolveTiming, type Timing } from "./fake_model.js";

type State = typeof MessagesAnnotation.State;

const getWeather = tool(
  async ({ city }: { city: string }) => {
    if (["sf", "san francisco"].includes(city.toLowerCase())) {
      return "It's 60 degrees and foggy.";
    }
    return "It's 90 degrees and sunny.";
  },
  {
    name: "get_weather",
    description: "Get the current weather for a city.",
    schema: z.object({ city: z.string() }),
  },
);

/** A node that streams one call of `model`, with delays resolved per request. */
function llmNode(name: string, model: FakeStreamingChatModel, fallback: Timing) {
  return async (state: State, config: RunnableConfig) => {
    const timing = resolveTiming(name, fallback, config.configurable);
    // Passing config keeps the streaming callbacks attached; the delays travel as call
    // options down to FakeStreamingChatModel._streamResponseChunks.
    const reply = await model.invoke(state.messages, {
      ...config,
      first_token_s: timing.first_token_s,
      token_gap_s: timing.token_gap_s,
    });
    return { messages: [reply] };
  };
}

function route(state: State): "action" | typeof END {
  const last = state.messages.at(-1);
  return AIMessage.isInstance(last) && (last.tool_calls?.length ?? 0) > 0 ? "action" : END;
}

function makeReact(model: FakeStreamingChatModel, fallback: Timing) {
  return new StateGraph(MessagesAnnotation)
    .addNode("agent", llmNode("agent", model, fallback))
    .addNode("action", new ToolNode([getWeather]))
    .addEdge(START, "agent")
    .addConditionalEdges("agent", route, ["action", END])
    .addEdge("action", "agent")
    .compile();
}

// ------------------------------------------------------------------ agent, boom, boom_custom, slow
export const agent_graph = makeReact(
  new FakeStreamingChatModel({ tool_name: "get_weather", tool_args: { city: "sf" } }),
  { first_token_s: 0.2, token_gap_s: 0.03 },
);
export const boom_graph = makeReact(
  new FakeStreamingChatModel({ model_name: "fake-boom", fail_after: 5 }),
  { first_token_s: 0.1, token_gap_s: 0.03 },
);
export const boom_custom_graph = makeReact(
  new FakeStreamingChatModel({ model_name: "fake-boom-custom", fail_after: 3, fail_custom: true }),
  { first_token_s: 0.1, token_gap_s: 0.03 },
);
export const slow_graph = makeReact(
  new FakeStreamingChatModel({ model_name: "fake-slow", final_text: "Sorry for the wait." }),
  { first_token_s: 7.0, token_gap_s: 0.03 },
);

// ------------------------------------------------------------------ parallel

// A node output that is not streamed: reaches the client as one whole "ai" message.
async function merge(_state: State) {
  return { messages: [new AIMessage({ content: "merged", id: "merge-msg-1" })] };
}

export const parallel_graph = new StateGraph(MessagesAnnotation)
  .addNode(
    "writer_a",
    llmNode(
      "writer_a",
      new FakeStreamingChatModel({
        model_name: "fake-a",
        final_text: "alpha one two three four five six seven eight nine",
      }),
      { first_token_s: 0.1, token_gap_s: 0.03 },
    ),
  )
  .addNode(
    "writer_b",
    llmNode(
      "writer_b",
      new FakeStreamingChatModel({
        model_name: "fake-b",
        final_text: "beta uno dos tres cuatro cinco seis siete",
      }),
      { first_token_s: 0.2, token_gap_s: 0.045 },
    ),
  )
  .addNode("merge", merge)
  .addEdge(START, "writer_a")
  .addEdge(START, "writer_b")
  .addEdge(["writer_a", "writer_b"], "merge")
  .addEdge("merge", END)
  .compile();

// ------------------------------------------------------------------ nested (subgraph)
const research_subgraph = new StateGraph(MessagesAnnotation)
  .addNode(
    "inner_agent",
    llmNode(
      "inner_agent",
      new FakeStreamingChatModel({
        model_name: "fake-inner",
        final_text: "inner research notes: fog likely",
      }),
      { first_token_s: 0.15, token_gap_s: 0.02 },
    ),
  )
  .addEdge(START, "inner_agent")
  .addEdge("inner_agent", END)
  .compile();

// Non-LLM work before the subgraph, so node durations differ from LLM time.
async function prepare(_state: State) {
  await new Promise((resolve) => setTimeout(resolve, 50));
  return {};
}

export const nested_graph = new StateGraph(MessagesAnnotation)
  .addNode("prepare", prepare)
  .addNode("research", research_subgraph) // the compiled subgraph is the node itself
  .addNode(
    "answer",
    llmNode(
      "answer",
      new FakeStreamingChatModel({ model_name: "fake-outer", final_text: "Final: bring a jacket" }),
      { first_token_s: 0.1, token_gap_s: 0.03 },
    ),
  )
  .addEdge(START, "prepare")
  .addEdge("prepare", "research")
  .addEdge("research", "answer")
  .addEdge("answer", END)
  .compile();
