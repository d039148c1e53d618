// The answer of one /v1/completions or /v1/chat/completions request as it leaves the sim: vLLM's
// JSON, streamed (one SSE event per engine step) or whole. Each streamed token is a concatenation of
// strings prebuilt per request and a cached JSON literal of the token's text, written with one write().
// If the socket pushes back, later tokens are coalesced and sent as one delta on 'drain', the way
// vLLM's output collector merges deltas for a consumer that falls behind; memory stays bounded by the
// request's own output.
// Choices with tool calls, logprobs or a decided text (structured outputs) take a slower event path
// (richEvent) with vLLM's deltas (tools.ts, logprobs.ts); the plain one is untouched.
import { randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import type { FinishReason, RequestTimings } from "../../engine/types.js";
import { assistantMessage, systemFingerprint } from "../../http/vllm-answers.js";
import type { SimContext } from "../serving/context.js";
import type { RequestSink } from "../protocol/sink.js";
import type { PromptInput } from "../serving/prompts.js";
import { DONE_EVENT, SSE_HEADERS } from "../../protocol/sse.js";
import type { ForcedText } from "../outputs/forced.js";
import { toolAnswer, toolFinishLiteral, type ToolCallPlan, type ToolStream } from "../outputs/tools.js";
import {
  chatEntries,
  codePoints,
  LegacyColumns,
  type LogprobChain,
  type LogprobStep,
  type TokenString,
} from "../outputs/logprobs.js";
import { spliceRaw, writeJsonPieces } from "./raw-json.js";

export type Kind = "chat" | "completion";

export interface ChoiceState {
  index: number;
  promptIndex: number;
  engineId: string;
  promptTokens: number;
  maxTokens: number;
  stopAfter: number;
  ignoreEos: boolean;
  tokens: number;
  parts: string[];
  /** token text held back while the socket pushes back */
  pending: string;
  /** return_token_ids: the prompt's ids (sent once, with the choice's first event) and the output's */
  promptIds: readonly number[] | null;
  promptIdsSent: boolean;
  outputIds: number[] | null;
  /** return_token_ids: ids of the text held back in `pending` */
  pendingIds: number[] | null;
  finishReason: FinishReason | null;
  finishSent: boolean;
  cachedTokens: number;
  echo: string | null;
  /** tool calls or logprobs: events go through richEvent */
  rich: boolean;
  /** a structured output or tool call: the text decided up front */
  forced: ForcedText | null;
  tool: ToolCallPlan | null;
  toolStream: ToolStream | null;
  lp: LogprobChain | null;
  /** logprob steps not yet sent (streamed) or all of them (JSON answers) */
  lpSteps: LogprobStep[];
  /** completions, streamed with logprobs: characters sent so far (text_offset goes on from there) */
  textLen: number;
  /** prompt_logprobs of this choice's prompt: JSON text in pieces (their concatenation) */
  promptLogprobs: string[] | null;
  /** completions with echo and logprobs: the echoed prompt's columns */
  echoColumns: LegacyColumns | null;
}

export function newRequestHex(): string {
  return randomUUID().replaceAll("-", "");
}

const FINISH_LITERAL: Record<FinishReason, string> = { stop: '"stop"', length: '"length"', abort: '"abort"' };
const NO_IDS: readonly number[] = [];

export class GenerationJob {
  readonly choices: ChoiceState[] = [];
  private readonly prefix: string;
  private readonly midNull: string;
  /** the choice's token-id fields when return_token_ids is off: vLLM dumps them as null */
  private readonly idsNull: string;
  /** continuous usage: what follows completion_tokens (chat sets completion_tokens_details) */
  private readonly usageEnd: string;
  /** the finish event's `system_fingerprint`, unless the trailing usage event carries it */
  private fingerprintField = "";
  /** return_token_ids (vLLM 0.10.2+): prompt and output token ids ride on the events and bodies */
  returnTokenIds = false;
  /** chat's echo (the last message's content): its own events after the role's, and the answer's head */
  chatEcho = "";
  private finished = 0;
  private closed = false;
  private blocked = false;
  private started = false;
  private finalizeWhenDrained = false;
  private readonly promptTokensTotal: number;

  constructor(
    private readonly ctx: SimContext,
    private readonly res: ServerResponse,
    private readonly kind: Kind,
    readonly id: string,
    private readonly model: string,
    private readonly stream: boolean,
    private readonly includeUsage: boolean,
    private readonly continuousUsage: boolean,
    prompts: PromptInput[],
  ) {
    const created = Math.floor(Date.now() / 1000);
    this.created = created;
    const object = kind === "chat" ? "chat.completion.chunk" : "text_completion";
    this.prefix = `data: {"id":"${id}","object":"${object}","created":${created},"model":${JSON.stringify(model)},"choices":[{"index":`;
    // the choice's fields after its text, up to (not including) the token ids and the closing `}]`
    this.midNull =
      kind === "chat"
        ? `},"logprobs":null,"finish_reason":null`
        : `,"logprobs":null,"finish_reason":null,"stop_reason":null`;
    // vLLM dumps stream chunks with exclude_unset: a completion choice sets both id fields, a chat
    // choice token_ids; usage appears only when continuous usage stats are asked for
    this.idsNull = kind === "chat" ? `,"token_ids":null` : `,"prompt_token_ids":null,"token_ids":null`;
    this.usageEnd = kind === "chat" ? `,"completion_tokens_details":null}` : `}`;
    this.promptTokensTotal = prompts.reduce((a, p) => a + p.tokenIds.length, 0);
  }
  readonly created: number;

  sink(choice: ChoiceState): RequestSink {
    return {
      onTokens: (ids) => this.onTokens(choice, ids),
      onFinished: (reason, timings) => this.onFinished(choice, reason, timings),
    };
  }

  start(): void {
    // vLLM stamps its fingerprint on each finish event, or on the usage event when one follows
    if (this.stream && !this.includeUsage)
      this.fingerprintField = `,"system_fingerprint":"${this.fingerprint()}"`;
    if (this.stream) {
      const headers: Record<string, string> = { ...SSE_HEADERS };
      this.res.writeHead(200, { ...headers, ...this.extraHeaders });
      this.res.flushHeaders();
      this.res.on("drain", () => this.drained());
    }
    this.res.on("close", () => this.clientGone());
  }

  extraHeaders: Record<string, string> = {};
  /** a NixlConnector producer's answer to do_remote_decode (src/sim/connectors/disagg.ts); null otherwise */
  kvTransferParams: Record<string, unknown> | null = null;
  /** top logprobs asked for (chat's top_logprobs, completions' logprobs) */
  logprobK = 0;
  /** a token's text as vLLM's logprobs show it (special tokens included) */
  tokenString: TokenString = () => "";
  /** JSON text the answer body carries verbatim (logprobs), in pieces, by their placeholder */
  private readonly raw = new Map<string, Iterable<string>>();
  private readonly rawTag = newRequestHex();

  /** A placeholder value that JSON.stringify of the body turns into `json` (see bodyPieces). */
  private rawJson(json: string | Iterable<string>): string {
    const key = `\u0000${this.rawTag}:${this.raw.size}\u0000`;
    this.raw.set(JSON.stringify(key), typeof json === "string" ? [json] : json);
    return key;
  }

  /** The body with each placeholder replaced by its JSON, as pieces to write in order. */
  private bodyPieces(body: string): Generator<string> {
    return spliceRaw(body, this.raw);
  }

  private textOf(ids: readonly number[]): string {
    if (ids.length === 1) return this.ctx.tokenText.get(ids[0]!) ?? this.ctx.tokenizer.decode(ids, true);
    let s = "";
    for (const id of ids) s += this.ctx.tokenText.get(id) ?? this.ctx.tokenizer.decode([id], true);
    return s;
  }

  private literalOf(ids: readonly number[]): string {
    if (ids.length === 1) {
      const lit = this.ctx.tokenLiteral.get(ids[0]!);
      if (lit !== undefined) return lit;
    }
    return JSON.stringify(this.textOf(ids));
  }

  private predictedFinish(c: ChoiceState): FinishReason | null {
    if (!c.ignoreEos && c.tokens >= c.stopAfter) return "stop";
    if (c.tokens >= c.maxTokens) return "length";
    return null;
  }

  /** continuous usage stats after `tokens` output tokens ("" when not asked for) */
  private usageField(c: ChoiceState, tokens: number): string {
    if (!this.continuousUsage) return "";
    const p = c.promptTokens;
    return `,"usage":{"prompt_tokens":${p},"total_tokens":${p + tokens},"completion_tokens":${tokens}${this.usageEnd}`;
  }

  /** the event's end after its choices: continuous usage, the fingerprint on a finish, the closing brace */
  private tail(c: ChoiceState, finish: boolean): string {
    if (!this.continuousUsage) return finish ? this.fingerprintField + "}\n\n" : "}\n\n";
    return `${this.usageField(c, c.tokens)}${finish ? this.fingerprintField : ""}}\n\n`;
  }

  /**
   * return_token_ids, where vLLM puts them in a stream: a completion choice carries
   * `prompt_token_ids` (a list in the choice's first event, null after) and `token_ids`; a chat
   * choice `token_ids` (the prompt's go top-level, on the role events). Without it both are null,
   * but for a completion's echo, which carries the prompt's ids all the same.
   */
  private idFields(c: ChoiceState, ids: readonly number[]): string {
    if (!this.returnTokenIds) {
      if (c.echo === null || c.promptIdsSent || c.promptIds === null) return this.idsNull;
      c.promptIdsSent = true;
      return `,"prompt_token_ids":[${c.promptIds.join(",")}],"token_ids":null`;
    }
    let s = "";
    if (this.kind === "completion") {
      s = c.promptIdsSent ? `,"prompt_token_ids":null` : `,"prompt_token_ids":[${c.promptIds!.join(",")}]`;
      c.promptIdsSent = true;
    }
    return `${s},"token_ids":[${ids.join(",")}]`;
  }

  /** chat's first events, one per choice: the role, usage before any token, the prompt's ids or null */
  private roleEvents(): string {
    let s = "";
    for (const c of this.choices) {
      const ids = this.returnTokenIds ? `[${c.promptIds!.join(",")}]` : "null";
      s += `${this.prefix}${c.index},"delta":{"role":"assistant","content":""${this.midNull}}]${this.usageField(c, 0)},"prompt_token_ids":${ids},"prompt_text":null}\n\n`;
    }
    if (this.chatEcho === "") return s;
    const echo = JSON.stringify(this.chatEcho);
    for (const c of this.choices)
      s += `${this.prefix}${c.index},"delta":{"content":${echo}${this.midNull}}]${this.usageField(c, 0)}}\n\n`;
    return s;
  }

  private event(
    c: ChoiceState,
    literal: string,
    finish: FinishReason | null,
    ids: readonly number[] = NO_IDS,
  ): string {
    const body = this.kind === "chat" ? `,"delta":{"content":${literal}` : `,"text":${literal}`;
    if (finish === null)
      return `${this.prefix}${c.index}${body}${this.midNull}${this.idFields(c, ids)}}]${this.tail(c, false)}`;
    const close = this.kind === "chat" ? "}" : "";
    return `${this.prefix}${c.index}${body}${close},"logprobs":null,"finish_reason":${FINISH_LITERAL[finish]},"stop_reason":null${this.idFields(c, ids)}}]${this.tail(c, true)}`;
  }

  private firstWrite(): string {
    this.started = true;
    if (this.kind === "chat") return this.roleEvents();
    let s = "";
    for (const c of this.choices) {
      if (c.echo === null) continue;
      const text = this.returnTokenIds ? "" : c.echo;
      if (c.rich) {
        c.textLen = codePoints(text);
        const lp = c.echoColumns ? c.echoColumns.json() : "null";
        s += this.compose(c, JSON.stringify(text), null, this.returnTokenIds ? c.promptIds! : NO_IDS, lp);
        continue;
      }
      // vLLM echoes no prompt text when the ids are asked for: its ids stand for it
      if (this.returnTokenIds) s += this.event(c, '""', null, c.promptIds!);
      else s += this.event(c, JSON.stringify(c.echo), null);
    }
    return s;
  }

  /**
   * One event of a rich choice: `body` is chat's delta object or a completion's text literal; the
   * finish_reason is the engine's, or "tool_calls" where vLLM says so.
   */
  private compose(
    c: ChoiceState,
    body: string,
    finish: FinishReason | null,
    ids: readonly number[],
    lp: string,
  ): string {
    const chat = this.kind === "chat";
    const fin =
      finish === null ? "null" : ((c.tool && toolFinishLiteral(c.tool, finish)) ?? FINISH_LITERAL[finish]);
    // chat chunks leave stop_reason out until the finish (vLLM dumps only the fields it set)
    const stop = chat && finish === null ? "" : `,"stop_reason":null`;
    const head = chat ? `,"delta":${body}` : `,"text":${body}`;
    return `${this.prefix}${c.index}${head},"logprobs":${lp},"finish_reason":${fin}${stop}${this.idFields(c, ids)}}]${this.tail(c, finish !== null)}`;
  }

  /** The event of a rich choice's pending text, ids and logprobs ("" where vLLM sends none). */
  private richEvent(c: ChoiceState, finish: FinishReason | null): string {
    const text = c.pending;
    c.pending = "";
    const ids = c.pendingIds ?? NO_IDS;
    if (c.pendingIds) c.pendingIds = [];
    let lp: string | null = null;
    if (c.lp) {
      if (this.kind === "chat")
        lp = `{"content":[${chatEntries(c.lpSteps, this.logprobK, this.tokenString)}]}`;
      else {
        const cols = new LegacyColumns(c.textLen, this.logprobK, this.tokenString);
        for (const step of c.lpSteps) cols.add(step);
        lp = cols.json();
      }
      c.lpSteps = [];
    }
    c.textLen += codePoints(text);
    if (this.kind === "completion") return this.compose(c, JSON.stringify(text), finish, ids, lp ?? "null");
    let delta: string | null = c.toolStream
      ? c.toolStream.delta(text)
      : `{"content":${JSON.stringify(text)}}`;
    if (delta === null) {
      // vLLM's parser had nothing to send: no event, unless something else must go out
      if (finish === null && lp === null && !this.returnTokenIds) return "";
      delta = "{}";
    }
    return this.compose(c, delta, finish, ids, lp ?? "null");
  }

  private onTokens(c: ChoiceState, ids: readonly number[]): void {
    const at = c.tokens;
    c.tokens += ids.length;
    if (this.closed) return;
    if (c.rich) {
      this.richTokens(c, ids, at);
      return;
    }
    if (!this.stream) {
      c.parts.push(this.textOf(ids));
      if (c.outputIds) for (const id of ids) c.outputIds.push(id);
      return;
    }
    const finish = this.predictedFinish(c);
    if (this.blocked) {
      c.pending += this.textOf(ids);
      if (c.pendingIds) for (const id of ids) c.pendingIds.push(id);
      if (finish) c.finishReason = finish;
      return;
    }
    const lead = this.started ? "" : this.firstWrite();
    if (finish) {
      c.finishReason = finish;
      c.finishSent = true;
    }
    if (!this.res.write(lead + this.event(c, this.literalOf(ids), finish, ids))) this.blocked = true;
  }

  /** A rich choice's tokens: text from the forced answer or the pool, logprob steps, then its event. */
  private richTokens(c: ChoiceState, ids: readonly number[], at: number): void {
    const text = c.forced ? c.forced.slice(at, c.tokens) : this.textOf(ids);
    if (c.lp) for (const id of ids) c.lpSteps.push(c.lp.next(id));
    if (!this.stream) {
      c.parts.push(text);
      if (c.outputIds) for (const id of ids) c.outputIds.push(id);
      return;
    }
    c.pending += text;
    if (c.pendingIds) for (const id of ids) c.pendingIds.push(id);
    const finish = this.predictedFinish(c);
    if (finish) c.finishReason = finish;
    if (this.blocked) return;
    const out = (this.started ? "" : this.firstWrite()) + this.richEvent(c, finish);
    if (finish) c.finishSent = true;
    if (out && !this.res.write(out)) this.blocked = true;
  }

  private onFinished(c: ChoiceState, reason: FinishReason, timings: RequestTimings): void {
    c.cachedTokens = timings.cachedTokens;
    c.tokens = timings.outputTokens;
    if (!c.finishSent || c.finishReason !== reason) {
      c.finishReason = reason;
      if (this.stream && !this.closed && !this.blocked) {
        const lead = this.started ? "" : this.firstWrite();
        const ev = c.rich ? this.richEvent(c, reason) : this.event(c, '""', reason);
        if (!this.res.write(lead + ev)) this.blocked = true;
        c.finishSent = true;
      }
    }
    this.finished++;
    if (this.finished === this.choices.length) this.complete();
  }

  private drained(): void {
    if (this.closed) return;
    this.blocked = false;
    let out = this.started ? "" : this.firstWrite();
    for (const c of this.choices) {
      if (c.rich) {
        if (c.pending || c.lpSteps.length > 0 || (c.finishReason && !c.finishSent)) {
          const finish = c.finishSent ? null : c.finishReason;
          out += this.richEvent(c, finish);
          if (finish) c.finishSent = true;
        }
        continue;
      }
      if (c.pending || (c.finishReason && !c.finishSent)) {
        const finish = c.finishReason;
        out += this.event(c, JSON.stringify(c.pending), finish, c.pendingIds ?? NO_IDS);
        c.pending = "";
        if (c.pendingIds) c.pendingIds = [];
        if (finish) c.finishSent = true;
      }
    }
    if (out && !this.res.write(out)) this.blocked = true;
    if (this.finalizeWhenDrained && !this.blocked) this.complete();
  }

  private usage(): Record<string, unknown> {
    const completion = this.choices.reduce((a, c) => a + c.tokens, 0);
    const usage: Record<string, unknown> = {
      prompt_tokens: this.promptTokensTotal,
      total_tokens: this.promptTokensTotal + completion,
      completion_tokens: completion,
    };
    if (this.ctx.options.enablePromptTokensDetails) {
      const cached = this.choices.reduce(
        (a, c) => a + (c.index % this.nPerPrompt === 0 ? c.cachedTokens : 0),
        0,
      );
      usage.prompt_tokens_details = { cached_tokens: cached };
    }
    return usage;
  }

  nPerPrompt = 1;

  private complete(): void {
    if (this.closed) return;
    if (this.stream) {
      if (this.blocked) {
        this.finalizeWhenDrained = true;
        return;
      }
      let out = this.started ? "" : this.firstWrite();
      if (this.includeUsage) {
        const object = this.kind === "chat" ? "chat.completion.chunk" : "text_completion";
        out += `data: ${JSON.stringify({
          id: this.id,
          object,
          created: this.created,
          model: this.model,
          choices: [],
          usage: this.usage(),
          system_fingerprint: this.fingerprint(),
        })}\n\n`;
      }
      this.closed = true;
      this.res.end(out + DONE_EVENT);
      return;
    }
    this.closed = true;
    // prompt logprobs of a long prompt run to megabytes: written in paced pieces past LARGE_BODY
    const body = JSON.stringify(this.kind === "chat" ? this.chatBody() : this.completionBody());
    writeJsonPieces(this.res, this.bodyPieces(body), this.extraHeaders);
  }

  private usageWithDetails(): Record<string, unknown> {
    const u = this.usage();
    if (!("prompt_tokens_details" in u)) u.prompt_tokens_details = null;
    if (!("completion_tokens_details" in u)) u.completion_tokens_details = null;
    return u;
  }

  private fingerprint(): string {
    const o = this.ctx.options;
    return systemFingerprint(
      o.vllmVersion,
      o.tensorParallelSize,
      `${o.model} ${o.maxModelLen ?? ""} ${o.dtype}`,
    );
  }

  private completionBody(): unknown {
    return {
      id: this.id,
      object: "text_completion",
      created: this.created,
      model: this.model,
      choices: this.choices.map((c) => ({
        index: c.index,
        text: (c.echo ?? "") + c.parts.join(""),
        logprobs: c.lp ? this.rawJson(this.legacyLogprobs(c)) : null,
        finish_reason: c.finishReason,
        stop_reason: null,
        token_ids: c.outputIds,
        prompt_logprobs: c.promptLogprobs === null ? null : this.rawJson(c.promptLogprobs),
        prompt_token_ids: this.returnTokenIds ? c.promptIds : null,
        routed_experts: null,
      })),
      service_tier: null,
      system_fingerprint: this.fingerprint(),
      usage: this.usageWithDetails(),
      kv_transfer_params: this.kvTransferParams,
      ec_transfer_params: null,
      metrics: null,
    };
  }

  private chatBody(): unknown {
    return {
      id: this.id,
      object: "chat.completion",
      created: this.created,
      model: this.model,
      choices: this.choices.map((c) => {
        const text = c.parts.join("");
        const answer = c.tool
          ? toolAnswer(c.tool, text, c.finishReason)
          : { message: assistantMessage(this.chatEcho + text), finishReason: c.finishReason };
        return {
          index: c.index,
          message: answer.message,
          logprobs: c.lp
            ? this.rawJson(`{"content":[${chatEntries(c.lpSteps, this.logprobK, this.tokenString)}]}`)
            : null,
          finish_reason: answer.finishReason,
          stop_reason: null,
          token_ids: c.outputIds,
          routed_experts: null,
        };
      }),
      service_tier: null,
      system_fingerprint: this.fingerprint(),
      usage: this.usageWithDetails(),
      prompt_logprobs: this.choices[0]?.promptLogprobs ? this.rawJson(this.choices[0].promptLogprobs) : null,
      prompt_token_ids: this.returnTokenIds ? (this.choices[0]?.promptIds ?? null) : null,
      prompt_text: null,
      kv_transfer_params: this.kvTransferParams,
      ec_transfer_params: null,
      metrics: null,
    };
  }

  /** A completion choice's legacy logprobs: the echoed prompt's columns, then the output's. */
  private legacyLogprobs(c: ChoiceState): Iterable<string> {
    const out = new LegacyColumns(c.echoColumns?.offset ?? 0, this.logprobK, this.tokenString);
    for (const step of c.lpSteps) out.add(step);
    return LegacyColumns.jsonPieces(c.echoColumns ? [c.echoColumns, out] : [out]);
  }

  /** A client that goes away aborts its requests in the engine at once, freeing their KV blocks. */
  private clientGone(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.choices)
      if (c.finishReason === null || !c.finishSent) this.ctx.runtime.abort(c.engineId);
  }
}
