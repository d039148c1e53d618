// The HTTP surface of `vllm serve`, on node:http directly (the token path is hot). Every request body
// is read with a byte limit and validated before it reaches a handler; every failure becomes vLLM's
// error JSON and the server keeps serving.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { lingerAfterRefusal, readBody, parseJsonObjectOffLoop } from "../http/body.js";
import { HttpError, sendError, type ErrorType } from "../http/errors.js";
import { VLLM_SHUTDOWN_MESSAGES } from "../http/vllm-answers.js";
import { logger } from "../obs/log.js";
import { versionAtLeast } from "../kvevents/versions.js";
import { resolveRequestModel, type SimContext } from "./serving/context.js";
import { NIXL_READ_PATH } from "./connectors/disagg.js";
import { handleChatBatch, invocationKind } from "./openai/batch.js";
import { handleChat, handleCompletions, newRequestHex } from "./openai/completions.js";
import { handleAbortRequests, handleGenerate } from "./scale-out/tokens-in-out.js";
import { uncountedRefusal } from "./serving/engine-request.js";
import { loadAdapter } from "./serving/lora.js";
import {
  countTokensSchema,
  handleCountTokens,
  handleMessages,
  messagesSchema,
} from "./anthropic/messages.js";
import { handleEmbeddings, handleRerank, handleScore } from "./openai/pooling.js";
import { continuation } from "./serving/prompts.js";
import {
  derenderChat,
  derenderCompletions,
  renderChat,
  renderCompletions,
  renderMessages,
  renderResponses,
} from "./scale-out/render.js";
import {
  handleCancelResponse,
  handleCreateResponse,
  handleGetResponse,
  responsesSchema,
} from "./openai/responses.js";
import {
  detokenizeSchema,
  loadLoraSchema,
  requestValidationError,
  tokenizeSchema,
  unloadLoraSchema,
  validate,
} from "./protocol/schemas.js";
import type { ChatMessage } from "../protocol/chat-messages.js";

const log = logger("sim.http");

type Handler = (ctx: SimContext, req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> | void;

function sendJson(
  res: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

function sendEmpty(res: ServerResponse, status = 200): void {
  res.writeHead(status, { "content-length": 0 });
  res.end();
}

function sendText(
  res: ServerResponse,
  status: number,
  text: string,
  type = "text/plain; charset=utf-8",
): void {
  res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(text) });
  res.end(text);
}

async function jsonBody(ctx: SimContext, req: IncomingMessage): Promise<Record<string, unknown>> {
  const buf = await readBody(req, ctx.options.maxBodyBytes);
  try {
    // large bodies on a worker thread: a 16 MiB prompt must not hold the engine's loop
    return await parseJsonObjectOffLoop(req, buf);
  } catch (err) {
    throw asValidationError(err, buf.length);
  }
}

/**
 * The shared parser's refusals (the router's OpenAI shape) as vLLM's FastAPI answers them: a request
 * validation error located at the body, or at the body's character where JSON decoding stopped; a
 * content-type other than JSON is its 400 too (vLLM's dependency raises a validation error, not 415).
 */
function asValidationError(err: unknown, bodyLength: number): unknown {
  if (!(err instanceof HttpError) || (err.status !== 400 && err.status !== 415)) return err;
  if (err.status === 415)
    return requestValidationError(null, ["Unsupported Media Type: Only 'application/json' is allowed"]);
  const m = /^malformed JSON body: (.*)$/.exec(err.message);
  if (m) {
    // JSON.parse names the character it stopped at, else it ran out of input: Python's json names the same
    const at = /position (\d+)/.exec(m[1]!)?.[1] ?? String(bodyLength);
    return requestValidationError(`body.${at}`, [
      `{'type': 'json_invalid', 'loc': 'body.${at}', 'msg': 'JSON decode error'}`,
    ]);
  }
  const type = /empty/.test(err.message) ? "missing" : "model_attributes_type";
  return requestValidationError("body", [`{'type': '${type}', 'loc': 'body', 'msg': '${err.message}'}`]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** the largest token id the tokenizers library reads (a u32) */
const U32_MAX = 0xffff_ffff;

/** the first vLLM release whose render and generate routes this sim models (gated by --enable-scale-out) */
const SCALE_OUT_SINCE = "0.32.0";

/**
 * The scale-out endpoints answer only with --enable-scale-out; otherwise 403 in vLLM's error shape
 * (type: the status's phrase, as vLLM's HTTPException handler writes it). A sim playing an older vLLM
 * (--vllm-version) has no such routes: 404, as those releases answer, which clients that probe them
 * (vllm-router's kv_aware tokenizes through chat render, else /tokenize) read as "use the fallback".
 */
function scaleOut(handler: Handler): Handler {
  return (ctx, req, res, url) => {
    if (!versionAtLeast(ctx.options.vllmVersion, SCALE_OUT_SINCE)) {
      sendJson(res, 404, { detail: "Not Found" });
      return;
    }
    if (!ctx.options.enableScaleOut)
      throw new HttpError(
        403,
        "Scale-out endpoints are disabled: start the server with --enable-scale-out",
        null,
        {},
        "Forbidden" as ErrorType,
      );
    return handler(ctx, req, res, url);
  };
}

/** --crash-after, --stall-ms and --fail-rate, applied to generation requests before any work. */
async function injectFaults(ctx: SimContext): Promise<void> {
  const o = ctx.options;
  const s = ctx.state;
  s.generationRequests++;
  if (o.crashAfter !== undefined && s.generationRequests > o.crashAfter) {
    log.error({ crashAfter: o.crashAfter }, "--crash-after reached: exiting abruptly");
    process.exit(1);
  }
  if (o.stallMs > 0) await sleep(o.stallMs);
  if (o.failRate > 0 && s.faultRandom() < o.failRate) {
    throw new HttpError(o.failStatus, `injected failure (--fail-rate ${o.failRate})`);
  }
}

function modelCards(ctx: SimContext): unknown {
  const created = ctx.startedAt;
  const permission = () => [
    {
      id: `modelperm-${newRequestHex()}`,
      object: "model_permission",
      created,
      allow_create_engine: false,
      allow_sampling: true,
      allow_logprobs: true,
      allow_search_indices: false,
      allow_view: true,
      allow_fine_tuning: false,
      organization: "*",
      group: null,
      is_blocking: false,
    },
  ];
  const base = ctx.options.servedModelNames.map((name) => ({
    id: name,
    object: "model",
    created,
    owned_by: "vllm",
    root: ctx.options.model,
    parent: null,
    max_model_len: ctx.engineConfig.maxModelLen,
    permission: permission(),
  }));
  const loras = ctx.loras.list().map((a) => ({
    id: a.name,
    object: "model",
    created: a.created,
    owned_by: "vllm",
    root: a.path,
    parent: ctx.servedName,
    max_model_len: null,
    permission: permission(),
  }));
  return { object: "list", data: [...base, ...loras] };
}

const routes: Record<string, Handler> = {
  "GET /health": (_ctx, _req, res) => sendEmpty(res),
  "GET /ping": (_ctx, _req, res) => sendEmpty(res),
  "POST /ping": (_ctx, _req, res) => sendEmpty(res),
  "GET /version": (ctx, _req, res) => sendJson(res, 200, { version: ctx.options.vllmVersion }),
  "GET /v1/models": (ctx, _req, res) => sendJson(res, 200, modelCards(ctx)),
  "GET /load": (ctx, _req, res) => sendJson(res, 200, { server_load: ctx.state.serverLoad }),
  "GET /metrics": async (ctx, _req, res) =>
    sendText(res, 200, await ctx.metrics.text(), ctx.metrics.contentType),
  "GET /is_sleeping": (ctx, _req, res) =>
    sendJson(res, 200, { is_sleeping: ctx.state.sleepState !== "awake" }),
  "POST /sleep": (ctx, _req, res, url) => {
    const level = Number(url.searchParams.get("level") ?? "1");
    if (level !== 1 && level !== 2)
      throw new HttpError(400, `sleep level must be 1 or 2, got ${url.searchParams.get("level")}`);
    // Sleeping discards the KV cache (both levels); weights are offloaded (1) or dropped (2).
    ctx.runtime.engine.resetPrefixCache();
    ctx.state.sleepState = level === 1 ? "weights_offloaded" : "discard_all";
    log.info({ level }, "engine sleeping");
    sendEmpty(res);
  },
  "POST /wake_up": (ctx, _req, res) => {
    ctx.state.sleepState = "awake";
    log.info("engine awake");
    sendEmpty(res);
  },
  "POST /reset_prefix_cache": (ctx, _req, res) => {
    const ok = ctx.runtime.engine.resetPrefixCache();
    if (!ok) log.warn("prefix cache not reset: blocks are in use by running requests");
    sendEmpty(res);
  },
  "POST /v1/completions": async (ctx, req, res) => {
    const body = await jsonBody(ctx, req);
    await injectFaults(ctx);
    await handleCompletions(ctx, req, res, body);
  },
  "POST /v1/chat/completions": async (ctx, req, res) => {
    const body = await jsonBody(ctx, req);
    await injectFaults(ctx);
    await handleChat(ctx, req, res, body);
  },
  "POST /tokenize": async (ctx, req, res) => {
    const body = validate(tokenizeSchema, await jsonBody(ctx, req));
    resolveRequestModel(ctx, body.model);
    const tk = ctx.tokenizer;
    let tokens: number[];
    if ("messages" in body) {
      const addSpecial = body.add_special_tokens ?? false;
      const { continueFinal, addGenerationPrompt } = continuation(body);
      tokens = await tk.encodeChatAsync(body.messages as ChatMessage[], {
        addGenerationPrompt,
        continueFinalMessage: continueFinal,
      });
      if (addSpecial && tk.bosTokenId !== null && tokens[0] !== tk.bosTokenId)
        tokens = [tk.bosTokenId, ...tokens];
    } else {
      tokens = await tk.encodeAsync(body.prompt, body.add_special_tokens ?? true);
    }
    sendJson(res, 200, {
      count: tokens.length,
      max_model_len: ctx.engineConfig.maxModelLen,
      tokens,
      token_strs: body.return_token_strs ? tk.tokenStrings(tokens) : null,
    });
  },
  "POST /detokenize": async (ctx, req, res) => {
    const body = validate(detokenizeSchema, await jsonBody(ctx, req));
    resolveRequestModel(ctx, body.model);
    // vLLM hands the ids to the tokenizers library, which reads them as u32 and decodes an id it
    // has no token for as nothing
    const vocab = ctx.tokenizer.vocabSize;
    if (body.tokens.some((id) => id > U32_MAX))
      throw new HttpError(400, "number too large to fit in target type");
    sendJson(res, 200, { prompt: ctx.tokenizer.decode(body.tokens.filter((id) => id < vocab)) });
  },
  // vLLM's API server has these routes only with VLLM_ALLOW_RUNTIME_LORA_UPDATING set; it answers when
  // the engine has loaded the adapter (its add_lora), so the answer waits the modelled load time
  "POST /v1/load_lora_adapter": async (ctx, req, res) => {
    if (!ctx.options.allowRuntimeLoraUpdating) return sendJson(res, 404, { detail: "Not Found" });
    const body = validate(loadLoraSchema, await jsonBody(ctx, req));
    const { seconds } = await loadAdapter(
      ctx.loras,
      ctx.engineConfig.lora ? ctx.engineConfig.lora.maxLoraRank : null,
      ctx.runtime,
      body.lora_name,
      body.lora_path,
      body.load_inplace ?? false,
      ctx.options.servedModelNames,
    );
    const waitMs = seconds * ctx.runtime.timeScale * 1000;
    if (waitMs >= 1) await new Promise((r) => setTimeout(r, waitMs));
    sendText(res, 200, `Success: LoRA adapter '${body.lora_name}' added successfully.`);
  },
  "POST /v1/unload_lora_adapter": async (ctx, req, res) => {
    if (!ctx.options.allowRuntimeLoraUpdating) return sendJson(res, 404, { detail: "Not Found" });
    const body = validate(unloadLoraSchema, await jsonBody(ctx, req));
    ctx.loras.unload(body.lora_name);
    ctx.runtime.unloadLora(body.lora_name);
    sendText(res, 200, `Success: LoRA adapter '${body.lora_name}' removed successfully.`);
  },
  "POST /v1/embeddings": async (ctx, req, res) =>
    sendJson(res, 200, await handleEmbeddings(ctx, await jsonBody(ctx, req))),
  "POST /v1/score": async (ctx, req, res) =>
    sendJson(res, 200, await handleScore(ctx, await jsonBody(ctx, req))),
  "POST /v1/rerank": async (ctx, req, res) =>
    sendJson(res, 200, await handleRerank(ctx, await jsonBody(ctx, req))),
  // NixlConnector's side channel (src/sim/connectors/disagg.ts): a decode engine reads a held prefill
  [`POST ${NIXL_READ_PATH}`]: async (ctx, req, res) => {
    if (!ctx.disagg) throw new HttpError(404, "no KV connector: start the sim with NixlConnector");
    ctx.disagg.serveRead(await jsonBody(ctx, req), res);
  },
  "GET /kv_event_sources": (ctx, _req, res) => sendJson(res, 200, ctx.kvEventSources ?? {}),
  "POST /v1/messages": async (ctx, req, res) => {
    const body = validate(messagesSchema, await jsonBody(ctx, req));
    await injectFaults(ctx);
    await handleMessages(ctx, req, res, body);
  },
  "POST /v1/messages/count_tokens": async (ctx, req, res) =>
    handleCountTokens(ctx, res, validate(countTokensSchema, await jsonBody(ctx, req))),
  "POST /v1/responses": async (ctx, req, res) => {
    const body = validate(responsesSchema, await jsonBody(ctx, req));
    await injectFaults(ctx);
    await handleCreateResponse(ctx, req, res, body);
  },
  "POST /v1/chat/completions/batch": async (ctx, req, res) => {
    const body = await jsonBody(ctx, req);
    await injectFaults(ctx);
    await handleChatBatch(ctx, req, res, body);
  },
  // SageMaker's entry point: the body goes to the first API it validates as, as vLLM dispatches it
  "POST /invocations": async (ctx, req, res) => {
    const body = await jsonBody(ctx, req);
    const kind = invocationKind(body);
    if (kind === "embedding") return sendJson(res, 200, await handleEmbeddings(ctx, body));
    await injectFaults(ctx);
    if (kind === "chat") await handleChat(ctx, req, res, body);
    else await handleCompletions(ctx, req, res, body);
  },
  "POST /v1/chat/completions/render": scaleOut(async (ctx, req, res) =>
    sendJson(res, 200, await renderChat(ctx, await jsonBody(ctx, req))),
  ),
  "POST /v1/completions/render": scaleOut(async (ctx, req, res) =>
    sendJson(res, 200, await renderCompletions(ctx, await jsonBody(ctx, req))),
  ),
  "POST /v1/messages/render": scaleOut(async (ctx, req, res) =>
    sendJson(res, 200, await renderMessages(ctx, await jsonBody(ctx, req))),
  ),
  "POST /v1/responses/render": scaleOut(async (ctx, req, res) =>
    sendJson(res, 200, await renderResponses(ctx, await jsonBody(ctx, req))),
  ),
  "POST /v1/chat/completions/derender": scaleOut(async (ctx, req, res) =>
    sendJson(res, 200, derenderChat(ctx, await jsonBody(ctx, req))),
  ),
  "POST /v1/completions/derender": scaleOut(async (ctx, req, res) =>
    sendJson(res, 200, derenderCompletions(ctx, await jsonBody(ctx, req))),
  ),
  "POST /inference/v1/generate": scaleOut(async (ctx, req, res) => {
    const body = await jsonBody(ctx, req);
    await injectFaults(ctx);
    await handleGenerate(ctx, req, res, body);
  }),
  "POST /inference/v1/abort_requests": scaleOut(async (ctx, req, res) =>
    handleAbortRequests(ctx, res, await jsonBody(ctx, req)),
  ),
};
routes["POST /score"] = routes["POST /v1/score"]!;
routes["POST /rerank"] = routes["POST /v1/rerank"]!;
routes["POST /v2/rerank"] = routes["POST /v1/rerank"]!;

/** Each path's methods, for the `allow` header of FastAPI's 405. */
const pathMethods = new Map<string, string[]>();
for (const k of Object.keys(routes)) {
  const [method, path] = [k.slice(0, k.indexOf(" ")), k.slice(k.indexOf(" ") + 1)];
  pathMethods.set(path, [...(pathMethods.get(path) ?? []), method]);
}

/** vLLM's routes with a path parameter: a stored response, and its cancel. */
const RESPONSE_PATH = /^\/v1\/responses\/([^/]+)$/;
const CANCEL_PATH = /^\/v1\/responses\/([^/]+)\/cancel$/;

/**
 * A path-parameter route's handler, or the methods it allows when the method is not one of them.
 * Any single segment is a response id, as in FastAPI's matching: `/v1/responses/derender` (no such
 * route in vLLM 0.32) is a GET of response "derender", so a POST there is its 405.
 */
function paramRoute(method: string | undefined, path: string): Handler | { allow: string } | null {
  let m = RESPONSE_PATH.exec(path);
  if (m) {
    const id = decodeURIComponent(m[1]!);
    if (method !== "GET") return { allow: "GET" };
    return (ctx, _req, res, url) => handleGetResponse(ctx, res, id, url);
  }
  m = CANCEL_PATH.exec(path);
  if (m) {
    const id = decodeURIComponent(m[1]!);
    if (method !== "POST") return { allow: "POST" };
    return (ctx, req, res) => {
      req.resume();
      handleCancelResponse(ctx, res, id);
    };
  }
  return null;
}

/** --api-key guards what vLLM's middleware guards: the OpenAI paths and the /inference ones. */
function authorized(ctx: SimContext, req: IncomingMessage, path: string): boolean {
  const key = ctx.options.apiKey;
  if (!key || !(path.startsWith("/v1") || path.startsWith("/inference"))) return true;
  return req.headers.authorization === `Bearer ${key}`;
}

export function createSimServer(ctx: SimContext): Server {
  const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    const url = new URL(req.url ?? "/", "http://sim");
    const path = url.pathname;
    const param = routes[`${req.method} ${path}`] ? null : paramRoute(req.method, path);
    const handler = routes[`${req.method} ${path}`] ?? (typeof param === "function" ? param : undefined);
    if (!handler) {
      req.resume();
      // FastAPI's own answers for unknown paths and methods.
      const methods = pathMethods.get(path);
      const allow = methods ? methods.join(", ") : param && typeof param === "object" ? param.allow : null;
      if (allow !== null) sendJson(res, 405, { detail: "Method Not Allowed" }, { allow });
      else sendJson(res, 404, { detail: "Not Found" });
      return;
    }
    if (!authorized(ctx, req, path)) {
      req.resume();
      sendJson(res, 401, { error: "Unauthorized" });
      return;
    }
    if (!ctx.state.ready && path !== "/metrics") {
      req.resume();
      sendError(res, 503, "the engine is starting up");
      return;
    }
    if (ctx.state.draining && req.method === "POST" && path !== "/ping") {
      // vLLM's drain (VLLM_SHUTDOWN_MESSAGES): what it would render is refused with a 500, while
      // /health, /metrics and the other reads answer and the requests in flight finish
      req.resume();
      sendError(res, 500, VLLM_SHUTDOWN_MESSAGES[0]!);
      return;
    }
    let result: Promise<void> | void;
    try {
      result = handler(ctx, req, res, url);
    } catch (err) {
      fail(ctx, req, res, err);
      return;
    }
    if (result) result.catch((err: unknown) => fail(ctx, req, res, err));
  });
  server.headersTimeout = 60_000;
  return server;
}

function fail(ctx: SimContext, req: IncomingMessage, res: ServerResponse, err: unknown): void {
  // completions.ts refuses at the in-flight cap without counting; vLLM counts it as an admission rejection
  if (uncountedRefusal(err)) ctx.metrics.admissionRejected("max_num_queued_reqs");
  if (err instanceof HttpError) {
    // refused mid-body (413): the client reads its answer while the rest is dropped
    lingerAfterRefusal(req, res);
    sendError(res, err);
    return;
  }
  log.error({ err }, "request failed");
  sendError(res, 500, err instanceof Error ? err.message : String(err));
}
