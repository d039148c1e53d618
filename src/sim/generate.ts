// /v1/completions and /v1/chat/completions: prompt → token ids → one engine request per choice →
// vLLM's JSON, streamed (one SSE event per token) or whole. Each streamed token is a concatenation of
// strings prebuilt per request and a cached JSON literal of the token's text, written with one write().
// If the socket pushes back, later tokens are coalesced and sent as one delta on 'drain', the way
// vLLM's output collector merges deltas for a consumer that falls behind; memory stays bounded by the
// request's own output.
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { seedFromString } from "../workload/rng.js";
import type { EngineRequest, FinishReason, RequestTimings } from "../engine/types.js";
import { HttpError } from "../http/errors.js";
import { contextLengthError } from "../http/context-length.js";
import { assistantMessage } from "../http/vllm-answers.js";
import { GreedyChain } from "./greedy.js";
import { chatPrompt, completionPrompts, streamFlags, type PromptInput } from "./prompts.js";
import { resolveRequestModel, type SimContext } from "./context.js";
import { MAX_IN_FLIGHT } from "./runtime.js";
import type { RequestSink } from "./sink.js";
import { chatSchema, completionSchema, validate } from "./schemas.js";
import { DONE_EVENT, SSE_HEADERS } from "./sse.js";

type Kind = "chat" | "completion";

interface ChoiceState {
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
}

export function newRequestHex(): string {
  return randomUUID().replaceAll("-", "");
}

const FINISH_LITERAL: Record<FinishReason, string> = { stop: '"stop"', length: '"length"', abort: '"abort"' };
const NO_IDS: readonly number[] = [];

class GenerationJob {
  readonly choices: ChoiceState[] = [];
  private readonly prefix: string;
  private readonly midNull: string;
  private readonly usageNull: string;
  /** return_token_ids (vLLM 0.10.2+): prompt and output token ids ride on the events and bodies */
  returnTokenIds = false;
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
    // Completion chunks are dumped with every field (usage null); chat chunks carry usage only when asked.
    this.usageNull = kind === "completion" || includeUsage ? `,"usage":null` : ``;
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
    if (this.stream) {
      const headers: Record<string, string> = { ...SSE_HEADERS };
      this.res.writeHead(200, { ...headers, ...this.extraHeaders });
      this.res.flushHeaders();
      this.res.on("drain", () => this.drained());
    }
    this.res.on("close", () => this.clientGone());
  }

  extraHeaders: Record<string, string> = {};
  /** a NixlConnector producer's answer to do_remote_decode (src/sim/disagg.ts); null otherwise */
  kvTransferParams: Record<string, unknown> | null = null;

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

  /** the event's end: usage (null, continuous or absent), then the closing brace */
  private usageTail(c: ChoiceState): string {
    if (!this.continuousUsage) return this.usageNull + "}\n\n";
    const p = c.promptTokens;
    return `,"usage":{"prompt_tokens":${p},"total_tokens":${p + c.tokens},"completion_tokens":${c.tokens}}}\n\n`;
  }

  /**
   * return_token_ids, where vLLM puts them in a stream: a completion choice carries
   * `prompt_token_ids` (a list in the choice's first event, null after) and `token_ids`; a chat
   * choice `token_ids` (the prompt's go top-level, on the role events).
   */
  private idFields(c: ChoiceState, ids: readonly number[]): string {
    if (!this.returnTokenIds) return "";
    let s = "";
    if (this.kind === "completion") {
      s = c.promptIdsSent ? `,"prompt_token_ids":null` : `,"prompt_token_ids":[${c.promptIds!.join(",")}]`;
      c.promptIdsSent = true;
    }
    return `${s},"token_ids":[${ids.join(",")}]`;
  }

  private roleEvents(): string {
    let s = "";
    for (const c of this.choices) {
      const tail = this.usageTail(c);
      const ids = this.returnTokenIds
        ? `${tail.slice(0, -3)},"prompt_token_ids":[${c.promptIds!.join(",")}]}\n\n`
        : tail;
      s += `${this.prefix}${c.index},"delta":{"role":"assistant","content":""${this.midNull}}]${ids}`;
    }
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
      return `${this.prefix}${c.index}${body}${this.midNull}${this.idFields(c, ids)}}]${this.usageTail(c)}`;
    const close = this.kind === "chat" ? "}" : "";
    return `${this.prefix}${c.index}${body}${close},"logprobs":null,"finish_reason":${FINISH_LITERAL[finish]},"stop_reason":null${this.idFields(c, ids)}}]${this.usageTail(c)}`;
  }

  private firstWrite(): string {
    this.started = true;
    if (this.kind === "chat") return this.roleEvents();
    let s = "";
    for (const c of this.choices) {
      if (c.echo === null) continue;
      // vLLM echoes no prompt text when the ids are asked for: its ids stand for it
      if (this.returnTokenIds) s += this.event(c, '""', null, c.promptIds!);
      else s += this.event(c, JSON.stringify(c.echo), null);
    }
    return s;
  }

  private onTokens(c: ChoiceState, ids: readonly number[]): void {
    c.tokens += ids.length;
    if (this.closed) return;
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

  private onFinished(c: ChoiceState, reason: FinishReason, timings: RequestTimings): void {
    c.cachedTokens = timings.cachedTokens;
    c.tokens = timings.outputTokens;
    if (!c.finishSent || c.finishReason !== reason) {
      c.finishReason = reason;
      if (this.stream && !this.closed && !this.blocked) {
        const lead = this.started ? "" : this.firstWrite();
        if (!this.res.write(lead + this.event(c, '""', reason))) this.blocked = true;
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
        })}\n\n`;
      }
      this.closed = true;
      this.res.end(out + DONE_EVENT);
      return;
    }
    this.closed = true;
    const body = JSON.stringify(this.kind === "chat" ? this.chatBody() : this.completionBody());
    this.res.writeHead(200, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      ...this.extraHeaders,
    });
    this.res.end(body);
  }

  private usageWithDetails(): Record<string, unknown> {
    const u = this.usage();
    if (!("prompt_tokens_details" in u)) u.prompt_tokens_details = null;
    return u;
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
        logprobs: null,
        finish_reason: c.finishReason,
        stop_reason: null,
        prompt_logprobs: null,
        prompt_token_ids: this.returnTokenIds ? c.promptIds : null,
        token_ids: c.outputIds,
      })),
      service_tier: null,
      system_fingerprint: null,
      usage: this.usageWithDetails(),
      kv_transfer_params: this.kvTransferParams,
    };
  }

  private chatBody(): unknown {
    return {
      id: this.id,
      object: "chat.completion",
      created: this.created,
      model: this.model,
      choices: this.choices.map((c) => ({
        index: c.index,
        message: assistantMessage(c.parts.join("")),
        logprobs: null,
        finish_reason: c.finishReason,
        stop_reason: null,
        token_ids: c.outputIds,
      })),
      service_tier: null,
      system_fingerprint: null,
      usage: this.usageWithDetails(),
      prompt_logprobs: null,
      prompt_token_ids: this.returnTokenIds ? (this.choices[0]?.promptIds ?? null) : null,
      kv_transfer_params: this.kvTransferParams,
    };
  }

  /** A client that goes away aborts its requests in the engine at once, freeing their KV blocks. */
  private clientGone(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.choices)
      if (c.finishReason === null || !c.finishSent) this.ctx.runtime.abort(c.engineId);
  }
}

interface GenerationParams {
  kind: Kind;
  prompts: PromptInput[];
  n: number;
  maxTokens: number | null;
  minTokens: number;
  ignoreEos: boolean;
  priority: number;
  cacheSalt: string | null;
  stream: boolean;
  includeUsage: boolean;
  continuousUsage: boolean;
  echo: boolean;
  requestId: string | null;
  model: string | null | undefined;
  kvTransferParams?: Record<string, unknown> | null | undefined;
  /** sampling temperature as sent (null: vLLM's default, which samples) */
  temperature: number | null;
  returnTokenIds: boolean;
}

function startGeneration(
  ctx: SimContext,
  req: IncomingMessage,
  res: ServerResponse,
  p: GenerationParams,
): void {
  const chosen = resolveRequestModel(ctx, p.model);
  // the client left while its prompt was tokenised: nothing to start
  if (res.destroyed || res.writableEnded) return;
  if (ctx.state.sleepState !== "awake") {
    throw new HttpError(503, "the engine is sleeping; POST /wake_up first");
  }
  if (p.priority !== 0 && ctx.options.schedulingPolicy !== "priority") {
    throw new HttpError(
      400,
      `Got priority ${p.priority} but Priority scheduling is not enabled.`,
      "priority",
    );
  }
  if (p.maxTokens !== null && p.maxTokens < 1) {
    throw new HttpError(400, `max_tokens must be at least 1, got ${p.maxTokens}.`, "max_tokens");
  }
  for (const prompt of p.prompts) {
    const err = contextLengthError(ctx.engineConfig.maxModelLen, prompt.tokenIds.length, p.maxTokens);
    if (err) throw err;
    if (prompt.tokenIds.length === 0) throw new HttpError(400, "The prompt cannot be empty.", "prompt");
  }
  const total = p.prompts.length * p.n;
  if (ctx.runtime.inFlight + total > MAX_IN_FLIGHT) {
    throw new HttpError(503, `the sim holds at most ${MAX_IN_FLIGHT} requests in flight; retry later`);
  }

  const headerId = req.headers["x-request-id"];
  const base = typeof headerId === "string" && headerId ? headerId : (p.requestId ?? newRequestHex());
  const id = `${p.kind === "chat" ? "chatcmpl" : "cmpl"}-${base}`;
  const job = new GenerationJob(
    ctx,
    res,
    p.kind,
    id,
    chosen.name,
    p.stream,
    p.includeUsage,
    p.continuousUsage,
    p.prompts,
  );
  job.nPerPrompt = p.n;
  job.returnTokenIds = p.returnTokenIds;
  if (ctx.options.enableRequestIdHeaders) job.extraHeaders = { "x-request-id": base };

  const maxLen = ctx.engineConfig.maxModelLen;
  const now = performance.now() / 1000;
  const pool = ctx.tokenizer.outputPool;
  const eos = ctx.tokenizer.eosTokenId;
  const seed = ctx.options.seed ^ seedFromString(chosen.loraName ?? "");
  const requests: EngineRequest[] = [];
  p.prompts.forEach((prompt, promptIndex) => {
    for (let k = 0; k < p.n; k++) {
      const index = promptIndex * p.n + k;
      const maxTokens = p.maxTokens ?? maxLen - prompt.tokenIds.length;
      const ignoreEos = p.ignoreEos;
      // greedy (temperature 0) choices of one prompt are the same answer, as with a real model
      const chain = new GreedyChain(
        prompt.tokenIds,
        {
          seed,
          choiceSalt: p.temperature === 0 ? 0 : k,
          pool: pool.ids,
          eosId: eos,
          meanLength: ctx.options.outputLenMean,
          minTokens: p.minTokens,
          ignoreEos,
        },
        maxTokens,
      );
      const stopAfter = chain.stopAfter;
      const engineId = String(ctx.state.nextRequestNumber++);
      const choice: ChoiceState = {
        index,
        promptIndex,
        engineId,
        promptTokens: prompt.tokenIds.length,
        maxTokens,
        stopAfter,
        ignoreEos,
        tokens: 0,
        parts: [],
        pending: "",
        finishReason: null,
        finishSent: false,
        cachedTokens: 0,
        echo: p.echo ? prompt.text : null,
        promptIds: p.returnTokenIds ? prompt.tokenIds : null,
        promptIdsSent: false,
        outputIds: p.returnTokenIds ? [] : null,
        pendingIds: p.returnTokenIds ? [] : null,
      };
      job.choices.push(choice);
      requests.push({
        requestId: engineId,
        promptTokenIds: prompt.tokenIds,
        maxTokens,
        stopAfter,
        ignoreEos,
        minTokens: p.minTokens,
        priority: p.priority,
        cacheSalt: p.cacheSalt,
        loraName: chosen.loraName,
        arrivalTime: now,
        sampleToken: (i: number) => chain.token(i),
      });
    }
  });
  job.start();
  ctx.state.serverLoad++;
  res.once("close", () => ctx.state.serverLoad--);
  const sinks = job.choices.map((c) => job.sink(c));
  ctx.disagg?.attach(p.kvTransferParams, id, requests, sinks, (kv) => (job.kvTransferParams = kv));
  for (let i = 0; i < requests.length; i++) {
    ctx.runtime.submit(requests[i]!, sinks[i]!, requests[i]!.maxTokens);
  }
}

export async function handleCompletions(
  ctx: SimContext,
  req: IncomingMessage,
  res: ServerResponse,
  raw: unknown,
): Promise<void> {
  const body = validate(completionSchema, raw);
  if (body.suffix) throw new HttpError(400, "suffix is not currently supported", "suffix");
  // vLLM checks the model before it renders or tokenises anything (404, not a prompt error)
  resolveRequestModel(ctx, body.model);
  const prompts = await completionPrompts(ctx, body);
  startGeneration(ctx, req, res, {
    kind: "completion",
    prompts,
    n: body.n ?? 1,
    maxTokens: body.max_tokens ?? 16,
    minTokens: body.min_tokens ?? 0,
    ignoreEos: body.ignore_eos ?? false,
    priority: body.priority ?? 0,
    cacheSalt: body.cache_salt ?? null,
    ...streamFlags(ctx, body),
    echo: body.echo === true,
    requestId: body.request_id ?? null,
    model: body.model,
    kvTransferParams: body.kv_transfer_params,
    temperature: body.temperature ?? null,
    returnTokenIds: body.return_token_ids === true,
  });
}

export async function handleChat(
  ctx: SimContext,
  req: IncomingMessage,
  res: ServerResponse,
  raw: unknown,
): Promise<void> {
  const body = validate(chatSchema, raw);
  // vLLM checks the model before it renders the chat template (404, not the template's 400)
  resolveRequestModel(ctx, body.model);
  const prompt = await chatPrompt(ctx, body);
  startGeneration(ctx, req, res, {
    kind: "chat",
    prompts: [prompt],
    n: body.n ?? 1,
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? null,
    minTokens: body.min_tokens ?? 0,
    ignoreEos: body.ignore_eos ?? false,
    priority: body.priority ?? 0,
    cacheSalt: body.cache_salt ?? null,
    ...streamFlags(ctx, body),
    echo: false,
    requestId: body.request_id ?? null,
    model: body.model,
    kvTransferParams: body.kv_transfer_params,
    temperature: body.temperature ?? null,
    returnTokenIds: body.return_token_ids === true,
  });
}
