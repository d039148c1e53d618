// `switchyard smoke URL`: is this OpenAI-compatible endpoint (a router, `vllm serve`, a sim) serving?
// Four checks in a few seconds, in order, stopping at the first failure: the model list, a chat
// completion, a streamed chat completion (chunks with choices, then [DONE]), and an error in OpenAI's
// format for a model that does not exist. One line says PASS or FAIL and why; the exit status is 0 or 1.
import { performance } from "node:perf_hooks";
import { request, type Dispatcher } from "undici";
import { DONE_DATA, SseParser } from "../protocol/sse.js";
import { z } from "zod";
import { CliError } from "../config/args.js";
import { commandFlags, parseCommandFlags } from "../config/command.js";
import { flag } from "../config/schema-flags.js";
import { ROUTER_URL } from "../config/defaults.js";
import { ERROR_CODES, SwitchyardError } from "../errors/index.js";

/** The command's options: each field declares its flag, type, bounds, default and help. */
const smokeOptions = z.object({
  model: flag(z.string().optional(), {
    flag: "model",
    help: "model to call (default: the first one /v1/models lists)",
  }),
  apiKey: flag(z.string().optional(), {
    flag: "api-key",
    env: "OPENAI_API_KEY",
    help: "bearer token (default: $OPENAI_API_KEY)",
  }),
  timeout: flag(z.number().min(0.1).default(10), { flag: "timeout", help: "seconds each check may take" }),
  maxTokens: flag(z.number().int().min(1).max(4096).default(8), {
    flag: "max-tokens",
    help: "max_tokens of the chat and the stream",
  }),
});
const FLAGS = commandFlags(smokeOptions);

const USAGE =
  "usage: switchyard smoke [URL] [options]\n\n" +
  "Checks an OpenAI-compatible server in a few seconds: /v1/models, a chat completion, a streamed one,\n" +
  `and an error for an unknown model; prints one PASS or FAIL line. URL defaults to ${ROUTER_URL}.\n` +
  `  switchyard smoke ${ROUTER_URL}`;

class CheckFailed extends SwitchyardError {
  static override readonly code = ERROR_CODES.checkFailed;
}

interface Ctx {
  base: string;
  headers: Record<string, string>;
  timeoutMs: number;
  maxTokens: number;
}

function failure(err: unknown): string {
  if (err instanceof CheckFailed) return err.message;
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = (err as { code?: string }).code ?? "";
  if (e.name === "TimeoutError" || e.name === "AbortError" || code.includes("TIMEOUT"))
    return "no answer in time";
  if (/^E[A-Z]+$/.test(code) || code.startsWith("UND_ERR_CONNECT") || code === "UND_ERR_SOCKET")
    return `cannot connect (${code})`;
  return e.message ?? String(err);
}

// undici's request, not fetch: fetch refuses "bad ports" (6000, 6665-6669, ...) a server may well use
async function call(ctx: Ctx, path: string, body?: unknown): Promise<Dispatcher.ResponseData> {
  return request(`${ctx.base}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: body === undefined ? ctx.headers : { ...ctx.headers, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    headersTimeout: ctx.timeoutMs,
    bodyTimeout: ctx.timeoutMs,
    signal: AbortSignal.timeout(ctx.timeoutMs),
  });
}

async function json(res: Dispatcher.ResponseData, what: string): Promise<Record<string, unknown>> {
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new CheckFailed(`${what}: HTTP ${res.statusCode} ${text.slice(0, 200)}`);
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new CheckFailed(`${what}: not JSON: ${text.slice(0, 120)}`);
  }
}

async function models(ctx: Ctx, wanted: string | undefined): Promise<{ model: string; note: string }> {
  const body = await json(await call(ctx, "/v1/models"), "GET /v1/models");
  const ids = Array.isArray(body.data) ? (body.data as { id?: unknown }[]).map((m) => m.id) : [];
  if (!ids.every((id) => typeof id === "string") || ids.length === 0)
    throw new CheckFailed("GET /v1/models: no model listed");
  const model = wanted ?? (ids[0] as string);
  if (wanted && !ids.includes(wanted)) throw new CheckFailed(`GET /v1/models: ${wanted} is not listed`);
  return { model, note: `${ids.length} model${ids.length === 1 ? "" : "s"}` };
}

const messages = [{ role: "user", content: "Say hello in one short sentence." }];

async function chat(ctx: Ctx, model: string): Promise<string> {
  const body = await json(
    await call(ctx, "/v1/chat/completions", { model, messages, max_tokens: ctx.maxTokens }),
    "chat",
  );
  const choice = (
    body.choices as { message?: { content?: unknown }; finish_reason?: unknown }[] | undefined
  )?.[0];
  if (typeof choice?.message?.content !== "string")
    throw new CheckFailed("chat: no choices[0].message.content");
  const usage = body.usage as { completion_tokens?: unknown } | undefined;
  if (typeof usage?.completion_tokens !== "number") throw new CheckFailed("chat: no usage.completion_tokens");
  return `${usage.completion_tokens} tokens, ${String(choice.finish_reason)}`;
}

async function stream(ctx: Ctx, model: string): Promise<string> {
  const t0 = performance.now();
  const res = await call(ctx, "/v1/chat/completions", {
    model,
    messages,
    max_tokens: ctx.maxTokens,
    stream: true,
    stream_options: { include_usage: true },
  });
  if (res.statusCode !== 200)
    throw new CheckFailed(`stream: HTTP ${res.statusCode} ${(await res.body.text()).slice(0, 200)}`);
  const type = String(res.headers["content-type"]);
  if (!type.startsWith("text/event-stream")) {
    await res.body.dump();
    throw new CheckFailed(`stream: content-type ${type}, not text/event-stream`);
  }
  let chunks = 0;
  let ttft = NaN;
  let done = false;
  let error: string | null = null;
  const parser = new SseParser();
  const onEvent = (data: string) => {
    if (data === DONE_DATA) {
      done = true;
      return;
    }
    let msg: { choices?: unknown[]; error?: { message?: string } };
    try {
      msg = JSON.parse(data) as typeof msg;
    } catch {
      error = `unparseable event: ${data.slice(0, 80)}`;
      return;
    }
    if (msg.error) error = msg.error.message ?? JSON.stringify(msg.error);
    else if (Array.isArray(msg.choices) && msg.choices.length > 0) {
      if (chunks === 0) ttft = performance.now() - t0;
      chunks++;
    }
  };
  for await (const chunk of res.body as AsyncIterable<Buffer>) parser.push(chunk, onEvent);
  parser.end(onEvent);
  if (error) throw new CheckFailed(`stream: error event: ${error}`);
  if (chunks === 0) throw new CheckFailed("stream: no chunk with choices");
  if (!done) throw new CheckFailed("stream: ended without data: [DONE]");
  return `${chunks} chunks, first after ${ttft.toFixed(0)} ms`;
}

async function error(ctx: Ctx): Promise<string> {
  const res = await call(ctx, "/v1/chat/completions", {
    model: "switchyard-smoke-no-such-model",
    messages,
    max_tokens: 1,
  });
  const text = await res.body.text();
  const status = res.statusCode;
  if (status < 400 || status >= 500)
    throw new CheckFailed(`error: an unknown model got HTTP ${status}, not a 4xx`);
  let body: { error?: { message?: unknown; type?: unknown }; message?: unknown; type?: unknown };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new CheckFailed(`error: HTTP ${status} without a JSON body: ${text.slice(0, 120)}`);
  }
  // OpenAI's {"error": {...}}; older vLLM answered {"object": "error", "message", "type", "code"}
  const e = body.error ?? body;
  if (typeof e.message !== "string") throw new CheckFailed(`error: HTTP ${status} body has no error message`);
  return `${status} ${typeof e.type === "string" ? e.type : ""}`.trim();
}

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommandFlags(argv, USAGE, FLAGS, {
    maxPositionals: 1,
    tooMany: (positionals) => `one URL, got ${positionals.length}`,
  });
  if (!parsed) return 0;
  const { flags, positionals } = parsed;
  const base = (positionals[0] ?? ROUTER_URL).replace(/\/+$/, "").replace(/\/v1$/, "");
  try {
    new URL(base);
  } catch {
    throw new CliError(`not a URL: ${base}`);
  }
  const key = flags["api-key"] as string | undefined;
  const ctx: Ctx = {
    base,
    headers: key ? { authorization: `Bearer ${key}` } : {},
    timeoutMs: Number(flags.timeout) * 1000,
    maxTokens: Number(flags["max-tokens"]),
  };
  const t0 = performance.now();
  const done: string[] = [];
  let step = "models";
  try {
    const { model, note } = await models(ctx, flags.model as string | undefined);
    done.push(`models ok (${note})`);
    step = "chat";
    done.push(`chat ok (${await chat(ctx, model)})`);
    step = "stream";
    done.push(`stream ok (${await stream(ctx, model)})`);
    step = "error";
    done.push(`error ok (${await error(ctx)})`);
    const s = ((performance.now() - t0) / 1000).toFixed(2);
    console.log(`PASS smoke ${base} ${model} in ${s} s: ${done.join(", ")}`);
    return 0;
  } catch (err) {
    const s = ((performance.now() - t0) / 1000).toFixed(2);
    const msg = failure(err);
    console.log(`FAIL smoke ${base} after ${s} s: ${msg.startsWith(step) ? msg : `${step}: ${msg}`}`);
    return 1;
  }
}
