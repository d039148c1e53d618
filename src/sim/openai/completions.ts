// /v1/completions and /v1/chat/completions: prompt → token ids → one engine request per choice, whose
// answer GenerationJob (job.ts) writes as vLLM's JSON or SSE. Structured outputs and tool calls decide
// the answer's text up front (forced.ts, structured.ts, tools.ts); logprobs ride along (logprobs.ts).
import type { IncomingMessage, ServerResponse } from "node:http";
import { seedFromString } from "../../random/rng.js";
import type { EngineRequest } from "../../engine/types.js";
import { HttpError } from "../../http/errors.js";
import { contextLengthError, outputBudget, type OutputParam } from "../../http/context-length.js";
import { GreedyChain } from "../outputs/greedy.js";
import { chatPrompt, completionPrompts, streamFlags, type PromptInput } from "../serving/prompts.js";
import { contextRules, resolveRequestModel, type SimContext } from "../serving/context.js";
import { MAX_IN_FLIGHT } from "../runtime/runtime.js";
import { checkSampling } from "../serving/engine-request.js";
import { chatSchema, completionSchema, validate, type ChatBody } from "../protocol/schemas.js";
import { contextRandom, contextState, ForcedText, wordsOf } from "../outputs/forced.js";
import { constrainedText, constraintOf, type Constraint } from "../outputs/structured.js";
import {
  autoCallsTool,
  planToolCall,
  toolModeOf,
  toolParserRefusal,
  ToolStream,
  type ToolCallPlan,
  type ToolDef,
  type ToolMode,
} from "../outputs/tools.js";
import {
  checkLogprobs,
  LogprobChain,
  promptLegacyColumns,
  promptState,
  promptLogprobsJson,
  type LegacyColumns,
  type TokenString,
} from "../outputs/logprobs.js";
import { GenerationJob, newRequestHex, type ChoiceState, type Kind } from "./job.js";

export { newRequestHex };

interface GenerationParams {
  kind: Kind;
  prompts: PromptInput[];
  n: number;
  maxTokens: number | null;
  /** the field that set maxTokens, which vLLM's refusals name */
  maxTokensParam: OutputParam;
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
  /** the request's `seed`: folded into a decided answer's draw */
  requestSeed?: number | null;
  constraint?: Constraint | null;
  tools?: { mode: ToolMode; defs: ToolDef[]; lastRole: string | undefined } | null;
  /** logprobs asked for: the top count (null: none) */
  logprobs?: number | null;
  /** per prompt: prompt_logprobs JSON, and the echoed prompt's legacy columns */
  promptLogprobs?: Array<string[] | null>;
  echoColumns?: Array<LegacyColumns | null>;
  /** chat's echo: the last message's content, sent before the answer (vLLM's echo for chat) */
  chatEcho?: string;
}

interface Decided {
  forced: ForcedText | null;
  tool: ToolCallPlan | null;
}
const UNDECIDED: Decided = { forced: null, tool: null };
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * How each choice's answer is decided: a tool call, a constrained text, or the greedy chain
 * (UNDECIDED). One choice per turn of the event loop: an n of 128 long JSON answers holds no stream.
 */
async function decideAnswers(ctx: SimContext, p: GenerationParams, seed: number): Promise<Decided[]> {
  const tools = p.tools;
  const calling = tools && (tools.mode.kind === "required" || tools.mode.kind === "named");
  const auto = tools?.mode.kind === "auto";
  const out: Decided[] = [];
  if (!calling && !p.constraint && !auto) return out;
  const words = wordsOf(ctx.tokenizer);
  const maxLen = ctx.engineConfig.maxModelLen;
  for (const prompt of p.prompts) {
    const base = contextState(prompt.tokenIds, seed);
    for (let k = 0; k < p.n; k++) {
      if (out.length > 0) await nextTurn();
      const rand = contextRandom(base, p.temperature === 0 ? 0 : k, p.requestSeed ?? null);
      let tool: ToolCallPlan | null = null;
      let text: string | null = null;
      // a grammar leaves an auto answer no room for tool-call markup: the constraint wins there
      if (calling || (auto && !p.constraint && autoCallsTool(tools!.lastRole, rand))) {
        tool = planToolCall(tools!.mode, tools!.defs, rand, words);
        text = tool.text;
      } else if (p.constraint) text = constrainedText(p.constraint, rand, words);
      if (text === null) {
        out.push(UNDECIDED);
        continue;
      }
      const maxTokens = outputBudget(maxLen, prompt.tokenIds.length, p.maxTokens);
      const forced = await ForcedText.create(text, ctx.tokenizer, ctx.tokenizer.eosTokenId, maxTokens);
      out.push({ forced, tool });
    }
  }
  return out;
}

async function startGeneration(
  ctx: SimContext,
  req: IncomingMessage,
  res: ServerResponse,
  p: GenerationParams,
): Promise<void> {
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
  const rules = contextRules(ctx);
  for (const prompt of p.prompts) {
    const err = contextLengthError({
      maxModelLen: ctx.engineConfig.maxModelLen,
      promptTokens: prompt.tokenIds.length,
      maxTokens: p.maxTokens,
      param: p.maxTokensParam,
      text: prompt.fromText,
      rules,
    });
    if (err) throw err;
    if (prompt.tokenIds.length === 0) throw new HttpError(400, "The prompt cannot be empty.", "prompt");
  }
  const total = p.prompts.length * p.n;
  if (ctx.runtime.inFlight + total > MAX_IN_FLIGHT) {
    throw new HttpError(503, `the sim holds at most ${MAX_IN_FLIGHT} requests in flight; retry later`);
  }
  const seed = ctx.options.seed ^ seedFromString(chosen.loraName ?? "");
  const decided = await decideAnswers(ctx, p, seed);
  // the client left while the answers were decided
  if (res.destroyed || res.writableEnded) return;

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
  job.chatEcho = p.chatEcho ?? "";
  const logprobs = p.logprobs ?? null;
  if (logprobs !== null) {
    job.logprobK = logprobs;
    job.tokenString = logprobTokenString(ctx);
  }
  if (ctx.options.enableRequestIdHeaders) job.extraHeaders = { "x-request-id": base };

  const maxLen = ctx.engineConfig.maxModelLen;
  const now = performance.now() / 1000;
  const pool = ctx.tokenizer.outputPool;
  const eos = ctx.tokenizer.eosTokenId;
  const requests: EngineRequest[] = [];
  p.prompts.forEach((prompt, promptIndex) => {
    const lpBase = logprobs === null ? 0 : promptState(prompt.tokenIds, seed);
    for (let k = 0; k < p.n; k++) {
      const index = promptIndex * p.n + k;
      // vLLM 0.32 serves a prompt that leaves less room than max_tokens, cutting max_tokens to fit
      const maxTokens = outputBudget(maxLen, prompt.tokenIds.length, p.maxTokens);
      const ignoreEos = p.ignoreEos;
      // greedy (temperature 0) choices of one prompt are the same answer, as with a real model
      const choiceSalt = p.temperature === 0 ? 0 : k;
      const { forced, tool } = decided[index] ?? UNDECIDED;
      const chain = forced
        ? null
        : new GreedyChain(
            prompt.tokenIds,
            {
              seed,
              choiceSalt,
              pool: pool.ids,
              eosId: eos,
              meanLength: ctx.options.outputLenMean,
              minTokens: p.minTokens,
              ignoreEos,
            },
            maxTokens,
          );
      const stopAfter = forced ? forced.stopAfter(ignoreEos) : chain!.stopAfter;
      const lp =
        logprobs === null
          ? null
          : new LogprobChain(lpBase, choiceSalt, pool.ids, logprobs, p.temperature === 0);
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
        // a streamed echo carries the prompt's ids even without return_token_ids
        promptIds: p.returnTokenIds || p.echo ? prompt.tokenIds : null,
        promptIdsSent: false,
        outputIds: p.returnTokenIds ? [] : null,
        pendingIds: p.returnTokenIds ? [] : null,
        rich: tool !== null || lp !== null || forced !== null,
        forced,
        tool,
        toolStream: tool && p.stream ? new ToolStream(tool) : null,
        lp,
        lpSteps: [],
        textLen: 0,
        promptLogprobs: p.promptLogprobs?.[promptIndex] ?? null,
        echoColumns: p.echoColumns?.[promptIndex] ?? null,
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
        lora: chosen.lora,
        arrivalTime: now,
        sampleToken: forced ? (i: number) => forced.token(i) : (i: number) => chain!.token(i),
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
  const constraint = constraintOf(body, false);
  const asked = typeof body.logprobs === "boolean" ? Number(body.logprobs) : (body.logprobs ?? null);
  const stream = body.stream === true;
  checkLogprobs(
    { logprobs: asked, topLogprobs: null, promptLogprobs: body.prompt_logprobs, stream, chat: false },
    ctx.options.maxLogprobs,
    ctx.tokenizer.vocabSize,
  );
  const logprobs = asked === null ? null : allOf(ctx, asked);
  // vLLM checks the model before it renders or tokenises anything (404, not a prompt error)
  const chosen = resolveRequestModel(ctx, body.model);
  const prompts = await completionPrompts(ctx, body);
  checkSampling(body, ctx.tokenizer.vocabSize);
  // echo with logprobs: vLLM computes the prompt's logprobs with the same count and sends them too
  const promptK =
    body.prompt_logprobs !== null && body.prompt_logprobs !== undefined
      ? allOf(ctx, body.prompt_logprobs)
      : body.echo === true && logprobs !== null
        ? logprobs
        : null;
  let promptLogprobs: Array<string[] | null> | undefined;
  let echoColumns: Array<LegacyColumns | null> | undefined;
  if (promptK !== null) {
    const seed = ctx.options.seed ^ seedFromString(chosen.loraName ?? "");
    const str = logprobTokenString(ctx);
    const pool = ctx.tokenizer.outputPool.ids;
    promptLogprobs = [];
    echoColumns = [];
    for (const pr of prompts) {
      promptLogprobs.push(await promptLogprobsJson(pr.tokenIds, seed, pool, promptK, str));
      echoColumns.push(
        body.echo === true && logprobs !== null
          ? await promptLegacyColumns(pr.tokenIds, seed, pool, logprobs, str)
          : null,
      );
    }
  }
  await startGeneration(ctx, req, res, {
    kind: "completion",
    prompts,
    n: body.n ?? 1,
    // vLLM's default is 16; an explicit null means what the context leaves, as a chat's unset one does
    maxTokens: body.max_tokens === undefined ? 16 : body.max_tokens,
    maxTokensParam: "max_tokens",
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
    requestSeed: body.seed ?? null,
    constraint,
    logprobs,
    promptLogprobs,
    echoColumns,
  });
}

/** A logprobs count with vLLM's -1 (the whole vocabulary) spelled out. */
function allOf(ctx: SimContext, k: number): number {
  return k === -1 ? ctx.tokenizer.vocabSize : k;
}

/** A token's text as vLLM's logprobs show it: its decode with special tokens kept. */
function logprobTokenString(ctx: SimContext): TokenString {
  const tk = ctx.tokenizer;
  const eosText = tk.decode([tk.eosTokenId], false);
  return (id) => (id === tk.eosTokenId ? eosText : (ctx.tokenText.get(id) ?? tk.decode([id], false)));
}

/**
 * What vLLM echoes for a chat request with `echo`: the last message's content where its role is the
 * answer's (the assistant's, or the last message's own without a generation prompt).
 */
function chatEchoText(body: ChatBody): string {
  const last = body.messages[body.messages.length - 1];
  if (body.echo !== true || last === undefined) return "";
  if (body.add_generation_prompt !== false && last.role !== "assistant") return "";
  const content = last.content;
  if (typeof content === "string") return content;
  return content ? content.map((p) => p.text ?? "").join("\n") : "";
}

export async function handleChat(
  ctx: SimContext,
  req: IncomingMessage,
  res: ServerResponse,
  raw: unknown,
): Promise<void> {
  const body = validate(chatSchema, raw);
  const autoServed = ctx.options.enableAutoToolChoice && ctx.options.toolCallParser !== undefined;
  const { mode, tools } = toolModeOf(raw as Record<string, unknown>, autoServed);
  const constraint = constraintOf(body, mode.kind === "named");
  const logprobs = body.logprobs ? allOf(ctx, body.top_logprobs ?? 0) : null;
  checkLogprobs(
    {
      logprobs: body.logprobs ? 1 : 0,
      topLogprobs: body.top_logprobs,
      promptLogprobs: body.prompt_logprobs,
      stream: body.stream === true,
      chat: true,
    },
    ctx.options.maxLogprobs,
    ctx.tokenizer.vocabSize,
  );
  // vLLM checks the model before it renders the chat template (404, not the template's 400)
  const chosen = resolveRequestModel(ctx, body.model);
  const refusal = toolParserRefusal(mode, ctx.options);
  if (refusal !== null) throw new HttpError(400, refusal);
  const prompt = await chatPrompt(ctx, body);
  checkSampling(body, ctx.tokenizer.vocabSize);
  let promptLogprobs: Array<string[] | null> | undefined;
  // vLLM 0.32: echo without prompt_logprobs asks for them with top_logprobs' count (default and null: 0,
  // each prompt token's own logprob), answered whole only (a stream carries no prompt_logprobs)
  const promptK =
    body.prompt_logprobs ?? (body.echo === true && body.stream !== true ? (body.top_logprobs ?? 0) : null);
  if (promptK !== null) {
    const seed = ctx.options.seed ^ seedFromString(chosen.loraName ?? "");
    const pool = ctx.tokenizer.outputPool.ids;
    const json = await promptLogprobsJson(
      prompt.tokenIds,
      seed,
      pool,
      allOf(ctx, promptK),
      logprobTokenString(ctx),
    );
    promptLogprobs = [json];
  }
  await startGeneration(ctx, req, res, {
    kind: "chat",
    prompts: [prompt],
    n: body.n ?? 1,
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? null,
    maxTokensParam: body.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens",
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
    requestSeed: body.seed ?? null,
    constraint,
    tools:
      mode.kind === "none"
        ? null
        : { mode, defs: tools, lastRole: body.messages[body.messages.length - 1]?.role },
    logprobs,
    promptLogprobs,
    chatEcho: chatEchoText(body),
  });
}
