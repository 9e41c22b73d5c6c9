/**
 * A fake token-streaming chat model and its timing knobs: the JS twin of demo/fake_model.py.
 *
 * No network: every "token" is produced locally after a real `setTimeout`, so the time to
 * first token and the gaps a client sees are known in advance.
 *
 * Timing resolution (first match wins), see `resolveTiming`, with the same keys as Python:
 *
 * 1. request config, per node:  `configurable.nodes.<node>.first_token_s` / `token_gap_s`
 * 2. request config, all nodes: `configurable.first_token_s` / `token_gap_s`
 * 3. environment, per node:     `DEMO_<NODE>_FIRST_TOKEN_S` / `DEMO_<NODE>_TOKEN_GAP_S`
 * 4. environment, all nodes:    `DEMO_FIRST_TOKEN_S` / `DEMO_TOKEN_GAP_S`
 * 5. the graph's default for that node.
 */

import type { CallbackManagerForLLMRun } from "@langchain/core/callbacks/manager";
import {
  BaseChatModel,
  type BaseChatModelCallOptions,
  type BaseChatModelParams,
  type LangSmithParams,
} from "@langchain/core/language_models/chat_models";
import {
  AIMessage,
  AIMessageChunk,
  type BaseMessage,
  ToolMessage,
  type UsageMetadata,
} from "@langchain/core/messages";
import { ChatGenerationChunk, type ChatResult } from "@langchain/core/outputs";

/** Delays of one LLM call, in seconds. */
export interface Timing {
  first_token_s: number;
  token_gap_s: number;
}

const KNOBS = ["first_token_s", "token_gap_s"] as const;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// What Python's float() accepts, less inf/nan (which would fail the range check anyway).
const NUMBER_RE = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;

function seconds(value: unknown, where: string): number {
  // A bad knob must fail loudly (the run ends with `event: error`) rather than silently
  // fall back to a default and make a timing test pass for the wrong reason.
  let parsed: number;
  if (typeof value === "number") parsed = value;
  else if (typeof value === "string" && NUMBER_RE.test(value)) parsed = Number(value);
  else throw new Error(`${where}: expected seconds as a number, got ${JSON.stringify(value)}`);
  if (!(parsed >= 0 && parsed <= 600)) {
    throw new Error(`${where}: ${parsed} s is outside 0..600 s`);
  }
  return parsed;
}

/** The delays for one call of `node` (order in the module comment). */
export function resolveTiming(
  node: string,
  fallback: Timing,
  configurable?: Record<string, unknown> | null,
  environ: Record<string, string | undefined> = process.env,
): Timing {
  const conf = configurable ?? {};
  const nodes = conf.nodes || {};
  if (!isObject(nodes)) {
    throw new Error(`configurable.nodes: expected an object, got ${JSON.stringify(nodes)}`);
  }
  const perNode = nodes[node] || {};
  if (!isObject(perNode)) {
    throw new Error(
      `configurable.nodes.${node}: expected an object, got ${JSON.stringify(perNode)}`,
    );
  }
  const values = { ...fallback };
  for (const knob of KNOBS) {
    const envNode = `DEMO_${node.toUpperCase()}_${knob.toUpperCase()}`;
    const envAll = `DEMO_${knob.toUpperCase()}`;
    if (perNode[knob] != null) {
      values[knob] = seconds(perNode[knob], `configurable.nodes.${node}.${knob}`);
    } else if (conf[knob] != null) {
      values[knob] = seconds(conf[knob], `configurable.${knob}`);
    } else if (environ[envNode]) {
      values[knob] = seconds(environ[envNode], envNode);
    } else if (environ[envAll]) {
      values[knob] = seconds(environ[envAll], envAll);
    }
  }
  return values;
}

/**
 * Stands in for a provider SDK error (e.g. openai's RateLimitError). The JS server does not
 * mask messages, so the client sees this name and message.
 */
export class ProviderRateLimitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProviderRateLimitError";
  }
}

function words(text: string): string[] {
  const parts = text.split(" ");
  return [parts[0], ...parts.slice(1).map((p) => ` ${p}`)];
}

/** json.dumps with Python's default separators, so the tool-call arg chunks are the same. */
function pyJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pyJson).join(", ")}]`;
  if (isObject(value)) {
    const items = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pyJson(v)}`);
    return `{${items.join(", ")}}`;
  }
  return JSON.stringify(value);
}

/** Python's len(str.split()): whitespace-separated words. */
function countWords(message: BaseMessage): number {
  const text =
    typeof message.content === "string" ? message.content : JSON.stringify(message.content);
  return text.split(/\s+/).filter(Boolean).length;
}

function randomHex(n: number): string {
  let out = "";
  for (let i = 0; i < n; i += 1) out += Math.floor(Math.random() * 16).toString(16);
  return out;
}

const sleep = (s: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, s * 1000);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });

export interface FakeCallOptions extends BaseChatModelCallOptions {
  first_token_s?: number;
  token_gap_s?: number;
}

export interface FakeStreamingChatModelParams extends BaseChatModelParams {
  model_name?: string;
  provider?: string;
  first_token_s?: number;
  token_gap_s?: number;
  final_text?: string;
  tool_name?: string;
  tool_args?: Record<string, unknown>;
  /** Throw instead of yielding chunk number `fail_after` (0-based). */
  fail_after?: number;
  /** Throw ProviderRateLimitError instead of Error. */
  fail_custom?: boolean;
}

/**
 * Streams either a tool call (as tool_call_chunks) or a text answer, word by word.
 *
 * If `tool_name` is set and the last message is not a ToolMessage, it streams a tool call;
 * otherwise it streams `final_text`. The last chunk is an OpenAI-style usage-only chunk (no
 * content, `usage_metadata` and `finish_reason`). langchain-core JS appends no
 * `chunk_position: "last"` chunk. Like ChatOpenAI, it reports each chunk to the callbacks
 * itself (`handleLLMNewToken` with the chunk), which is what the server's `messages` stream
 * listens to.
 */
export class FakeStreamingChatModel extends BaseChatModel<FakeCallOptions, AIMessageChunk> {
  model_name = "fake-stream-1";
  provider = "fakeprovider";
  first_token_s = 0.2;
  token_gap_s = 0.03;
  final_text = "It's 60 degrees and foggy in San Francisco, with a light breeze.";
  tool_name?: string;
  tool_args: Record<string, unknown> = {};
  fail_after?: number;
  fail_custom = false;

  static lc_name() {
    return "FakeStreamingChatModel";
  }

  constructor(fields: FakeStreamingChatModelParams = {}) {
    super(fields);
    this.model_name = fields.model_name ?? this.model_name;
    this.provider = fields.provider ?? this.provider;
    this.first_token_s = fields.first_token_s ?? this.first_token_s;
    this.token_gap_s = fields.token_gap_s ?? this.token_gap_s;
    this.final_text = fields.final_text ?? this.final_text;
    this.tool_name = fields.tool_name;
    this.tool_args = fields.tool_args ?? {};
    this.fail_after = fields.fail_after;
    this.fail_custom = fields.fail_custom ?? false;
  }

  _llmType(): string {
    return "fake-streaming-chat";
  }

  // These become ls_provider / ls_model_name in every token's metadata.
  getLsParams(_options: this["ParsedCallOptions"]): LangSmithParams {
    return {
      ls_provider: this.provider,
      ls_model_name: this.model_name,
      ls_model_type: "chat",
      ls_temperature: 0,
    };
  }

  private plan(messages: BaseMessage[]): AIMessageChunk[] {
    const last = messages.at(-1);
    const chunks: AIMessageChunk[] = [];
    const nIn = messages.reduce((n, m) => n + countWords(m), 0) + 5;
    let finish: string;
    if (this.tool_name && !(last instanceof ToolMessage)) {
      const callId = `call_${randomHex(12)}`;
      const args = pyJson(Object.keys(this.tool_args).length ? this.tool_args : { city: "sf" });
      chunks.push(
        new AIMessageChunk({
          content: "",
          tool_call_chunks: [
            { name: this.tool_name, args: "", id: callId, index: 0, type: "tool_call_chunk" },
          ],
        }),
      );
      for (let i = 0; i < args.length; i += 4) {
        chunks.push(
          new AIMessageChunk({
            content: "",
            tool_call_chunks: [{ args: args.slice(i, i + 4), index: 0, type: "tool_call_chunk" }],
          }),
        );
      }
      finish = "tool_calls";
    } else {
      for (const w of words(this.final_text)) chunks.push(new AIMessageChunk({ content: w }));
      finish = "stop";
    }
    const nOut = chunks.length;
    const usage: UsageMetadata = {
      input_tokens: nIn,
      output_tokens: nOut,
      total_tokens: nIn + nOut,
    };
    // OpenAI style: a trailing chunk with no content that carries usage and finish_reason.
    chunks.push(
      new AIMessageChunk({
        content: "",
        usage_metadata: usage,
        response_metadata: {
          finish_reason: finish,
          model_name: this.model_name,
          model_provider: this.provider,
        },
      }),
    );
    return chunks;
  }

  private fail(i: number): never {
    if (this.fail_custom) {
      throw new ProviderRateLimitError(`429 simulated rate limit after ${i} chunks`);
    }
    throw new Error(`simulated provider failure after ${i} chunks`);
  }

  // Used only when nobody streams (e.g. stream_mode "values"): answers at once.
  async _generate(messages: BaseMessage[]): Promise<ChatResult> {
    if (this.fail_after != null) this.fail(0);
    const chunks = this.plan(messages);
    let msg = chunks[0];
    for (const c of chunks.slice(1)) msg = msg.concat(c);
    const whole = new AIMessage({
      content: msg.content,
      tool_calls: msg.tool_calls,
      usage_metadata: msg.usage_metadata,
      response_metadata: msg.response_metadata,
    });
    return { generations: [{ text: typeof whole.content === "string" ? whole.content : "", message: whole }] };
  }

  async *_streamResponseChunks(
    messages: BaseMessage[],
    options: this["ParsedCallOptions"],
    runManager?: CallbackManagerForLLMRun,
  ): AsyncGenerator<ChatGenerationChunk> {
    const first = options.first_token_s ?? this.first_token_s;
    const gap = options.token_gap_s ?? this.token_gap_s;
    const chunks = this.plan(messages);
    for (const [i, message] of chunks.entries()) {
      await sleep(i === 0 ? first : gap, options.signal);
      if (this.fail_after != null && i === this.fail_after) this.fail(i);
      const text = typeof message.content === "string" ? message.content : "";
      const chunk = new ChatGenerationChunk({ text, message });
      yield chunk;
      await runManager?.handleLLMNewToken(text, undefined, undefined, undefined, undefined, {
        chunk,
      });
    }
  }
}
