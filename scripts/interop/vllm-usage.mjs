// Every token charged, on a real vLLM 0.32 engine: a router with token-limited tenants in front of one
// `vllm serve` of the tiny model, one tenant per route and shape, so that each tenant's charge
// (switchyard_tenant_tokens_total) is one request's. A whole answer, streamed or not, must be charged
// exactly the usage the engine reports in it (and counts in vllm:prompt_tokens_total and
// vllm:generation_tokens_total); a stream the client cuts short must be charged at least what the
// engine generated before the abort reached it. Called by scripts/interop.mjs in the `vllm` group.
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { VLLM_ENV, VLLM_SERVE_FLAGS, call } from "./vllm.mjs";

const MODEL = "tiny";
/** what a first start of an engine may take on 2 busy cores */
const ENGINE_START_MS = 900_000;
const keyOf = (tenant) => `sk-interop-usage-${tenant}-`.padEnd(40, "0");
const q = "Name three rivers of Europe and the seas they reach.";
const chat = [{ role: "user", content: q }];
const withUsage = { include_usage: true };

/**
 * Whole answers: [tenant, path, body]. Streams ask for their usage themselves where the route needs
 * asking (so the client sees what the engine reported), but for `chat-stream-stripped`, whose usage
 * event the router adds and takes out again: its charge is held to the engine's counters.
 */
const WHOLE = [
  ["chat", "/v1/chat/completions", { model: MODEL, messages: chat, max_tokens: 12, n: 2 }],
  [
    "chat-stream",
    "/v1/chat/completions",
    { model: MODEL, messages: chat, max_tokens: 12, stream: true, stream_options: withUsage },
  ],
  [
    "chat-stream-stripped",
    "/v1/chat/completions",
    { model: MODEL, messages: chat, max_tokens: 12, stream: true },
  ],
  ["completions", "/v1/completions", { model: MODEL, prompt: [q, "Rivers:"], max_tokens: 12 }],
  [
    "completions-stream",
    "/v1/completions",
    { model: MODEL, prompt: [q, "Rivers:"], max_tokens: 12, stream: true, stream_options: withUsage },
  ],
  ["messages", "/v1/messages", { model: MODEL, system: "Be brief.", messages: chat, max_tokens: 12 }],
  [
    "messages-stream",
    "/v1/messages",
    { model: MODEL, system: "Be brief.", messages: chat, max_tokens: 12, stream: true },
  ],
  ["responses", "/v1/responses", { model: MODEL, input: q, max_output_tokens: 16 }],
  ["responses-stream", "/v1/responses", { model: MODEL, input: q, max_output_tokens: 16, stream: true }],
  ["invocations-chat", "/invocations", { model: MODEL, messages: chat, max_tokens: 12 }],
  [
    "invocations-completion-stream",
    "/invocations",
    { model: MODEL, prompt: [q, "Rivers:"], max_tokens: 12, stream: true, stream_options: withUsage },
  ],
  [
    "generate",
    "/inference/v1/generate",
    { model: MODEL, token_ids: [300, 301, 302, 303], sampling_params: { max_tokens: 12, n: 2 } },
  ],
  [
    "generate-stream",
    "/inference/v1/generate",
    {
      model: MODEL,
      token_ids: [300, 301, 302, 303],
      sampling_params: { max_tokens: 12 },
      stream: true,
      stream_options: withUsage,
    },
  ],
  [
    "chat-batch",
    "/v1/chat/completions/batch",
    { model: MODEL, messages: [chat, [{ role: "user", content: "And three lakes." }]], max_tokens: 12 },
  ],
];

/** Streams cut short after a few events: long answers, so that the engine is still generating. */
const LONG = 1500;
const CUT = [
  [
    "cut-chat",
    "/v1/chat/completions",
    { model: MODEL, messages: chat, max_tokens: LONG, ignore_eos: true, stream: true },
  ],
  [
    "cut-completions",
    "/v1/completions",
    { model: MODEL, prompt: q, max_tokens: LONG, ignore_eos: true, stream: true },
  ],
  // several answers, each event with one answer's running count: the charge is never one answer's
  [
    "cut-chat-n-continuous",
    "/v1/chat/completions",
    {
      model: MODEL,
      messages: chat,
      n: 4,
      max_tokens: LONG,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true, continuous_usage_stats: true },
    },
  ],
  ["cut-messages", "/v1/messages", { model: MODEL, messages: chat, max_tokens: LONG, stream: true }],
  ["cut-responses", "/v1/responses", { model: MODEL, input: q, max_output_tokens: LONG, stream: true }],
  [
    "cut-invocations",
    "/invocations",
    { model: MODEL, prompt: [q, "Rivers:"], max_tokens: LONG, ignore_eos: true, stream: true },
  ],
  [
    "cut-generate",
    "/inference/v1/generate",
    {
      model: MODEL,
      token_ids: [300, 301, 302, 303],
      sampling_params: { max_tokens: LONG, ignore_eos: true },
      stream: true,
    },
  ],
];

/** Sum of the series of a Prometheus page whose name and labels start with `prefix`. */
function sum(text, prefix) {
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(prefix)) continue;
    const rest = line.slice(prefix.length);
    if (!(rest[0] === " " || rest[0] === "{" || rest[0] === "," || prefix.endsWith(","))) continue;
    total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}

/** A body's usage in any of the three vocabularies, wherever the route puts it; undefined without one. */
function usageIn(obj) {
  const u = obj?.usage ?? obj?.response?.usage ?? obj?.message?.usage;
  if (!u || typeof u !== "object") return undefined;
  return { prompt: u.prompt_tokens ?? u.input_tokens, completion: u.completion_tokens ?? u.output_tokens };
}

/** Sends a request as `tenant`; reads a stream through (or `cutAfter` events, then hangs up). */
async function send(base, tenant, path, body, cutAfter = Infinity) {
  const ac = new AbortController();
  const res = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${keyOf(tenant)}` },
    body: JSON.stringify(body),
    signal: ac.signal,
  });
  const out = { status: res.status, events: 0, usage: undefined, text: "" };
  if (!body.stream || res.status !== 200) {
    out.text = await res.text();
    try {
      out.usage = usageIn(JSON.parse(out.text));
    } catch {
      // not JSON: no usage
    }
    return out;
  }
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  while (out.events < cutAfter) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      out.text += `${ev}\n\n`;
      out.events++;
      for (const line of ev.split("\n")) {
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        // the last usage an event carries is the answer's (Messages: message_delta over message_start)
        out.usage = usageIn(JSON.parse(line.slice(6))) ?? out.usage;
      }
    }
  }
  if (out.events >= cutAfter) {
    ac.abort();
    await reader.cancel().catch(() => {});
  }
  return out;
}

export async function vllmUsageChecks(h, p) {
  const port = await h.freePort();
  const engine = h.start(
    "vllm-usage",
    p.vllm,
    ["serve", p.model, ...VLLM_SERVE_FLAGS, "--port", String(port)],
    VLLM_ENV,
    { group: true },
  );
  const url = `http://127.0.0.1:${port}`;
  try {
    let up = false;
    await h.check("a real vLLM 0.32 engine for the usage checks starts", async () => {
      const t0 = Date.now();
      await h.until("vllm-usage (vllm serve)", () => h.httpOk(`${url}/health`), ENGINE_START_MS, engine);
      up = true;
      return `ready after ${((Date.now() - t0) / 1000).toFixed(0)} s`;
    });
    if (up) await usageChecks(h, url);
  } finally {
    await h.stop(engine);
  }
}

/** A router with a tenant per case in front of the engine at `url`, and the checks through it. */
export async function usageChecks(h, url) {
  const { start, stop, check, until, httpOk, freePort, RUN, CLI } = h;
  const tenants = [...WHOLE, ...CUT].map(([t]) => t);
  const file = join(RUN, "router-usage.json");
  writeFileSync(
    file,
    JSON.stringify({
      tenancy: {
        // token limits far above the run: the router settles every answer's usage, never refuses
        tenants: Object.fromEntries(
          tenants.map((t) => [
            t,
            { limits: { promptTokensPerMinute: 10_000_000, completionTokensPerMinute: 10_000_000 } },
          ]),
        ),
        keys: tenants.map((t) => ({ hash: createHash("sha256").update(keyOf(t)).digest("hex"), tenant: t })),
      },
      // the tenants' series read without the admin key
      metrics: { access: "open" },
    }),
  );
  const port = await freePort();
  const proc = start("router-vllm-usage", process.execPath, [
    CLI,
    "router",
    ...["--host", "127.0.0.1", "--port", String(port), "--config", file, "--backend", url],
  ]);
  const router = `http://127.0.0.1:${port}`;
  try {
    await check(
      "every route a real vLLM 0.32 answers through the router with tenancy (chat, completions, Messages, Responses, /invocations, token-in generate, chat batch), streamed and not: each tenant charged exactly the usage in its answer and the engine's own token counters",
      async () => {
        await until("router-vllm-usage", () => httpOk(`${router}/ready`), 120_000, proc);
        const rows = await wholeRows(h, url, router);
        writeFileSync(join(RUN, "usage-whole.json"), JSON.stringify(rows, null, 1));
        return verdictWhole(rows);
      },
    );
    await check(
      "streams cut short by the client on chat (also n: 4 with continuous usage stats), completions, Messages, Responses, /invocations and generate on a real vLLM 0.32: each charged at least what the engine generated (vllm:generation_tokens_total)",
      async () => {
        const rows = await cutRows(h, url, router);
        writeFileSync(join(RUN, "usage-cut.json"), JSON.stringify(rows, null, 1));
        return verdictCut(rows);
      },
    );
  } finally {
    await stop(proc);
  }
}

/** The engine's prompt and generated token counters, once nothing runs and they stand still. */
async function engineCounts(h, url) {
  let last;
  let now;
  await h.until(
    "the engine's counters settled",
    async () => {
      const text = (await call(url, "GET", "/metrics")).text;
      now = {
        running: sum(text, "vllm:num_requests_running") + sum(text, "vllm:num_requests_waiting"),
        prompt: sum(text, "vllm:prompt_tokens_total"),
        generated: sum(text, "vllm:generation_tokens_total"),
      };
      const still = last !== undefined && now.running === 0 && now.generated === last.generated;
      last = now;
      if (!still) await h.sleep(300);
      return still;
    },
    60_000,
  );
  return now;
}

/** What the router charged `tenant` once its request is over (it counted the tenant's answer). */
async function charged(h, router, tenant) {
  let text = "";
  await h.until(
    `the router's count of ${tenant}'s request`,
    async () => {
      text = (await call(router, "GET", "/metrics")).text;
      return sum(text, `switchyard_tenant_requests_total{tenant="${tenant}",`) >= 1;
    },
    30_000,
  );
  return {
    prompt: sum(text, `switchyard_tenant_tokens_total{tenant="${tenant}",kind="prompt"}`),
    completion: sum(text, `switchyard_tenant_tokens_total{tenant="${tenant}",kind="completion"}`),
  };
}

/** One whole answer at a time, each with the engine's counters before and after it. */
async function wholeRows(h, url, router) {
  const whole = [];
  for (const [tenant, path, body] of WHOLE) {
    const before = await engineCounts(h, url);
    const res = await send(router, tenant, path, body);
    const after = await engineCounts(h, url);
    whole.push({
      tenant,
      path,
      stream: body.stream === true,
      // vLLM runs `n` answers as n requests of the prompt, each counted in vllm:prompt_tokens_total;
      // the answer's usage, as OpenAI's, counts the prompt once
      n: body.n ?? body.sampling_params?.n ?? 1,
      status: res.status,
      answer: res.usage,
      engine: { prompt: after.prompt - before.prompt, completion: after.generated - before.generated },
      charged: await charged(h, router, tenant),
      // the router's own usage event (asked for on the client's behalf) must not reach the client
      strippedSeen: tenant.endsWith("-stripped") && /"usage":\{/.test(res.text),
      error: res.status === 200 ? undefined : res.text.slice(0, 200),
    });
  }
  return whole;
}

/** One stream at a time, cut after 4 events, with the engine's generated tokens before and after. */
async function cutRows(h, url, router) {
  const cut = [];
  for (const [tenant, path, body] of CUT) {
    const before = await engineCounts(h, url);
    const res = await send(router, tenant, path, body, 4);
    const after = await engineCounts(h, url);
    cut.push({
      tenant,
      path,
      status: res.status,
      events: res.events,
      generated: after.generated - before.generated,
      charged: (await charged(h, router, tenant)).completion,
      error: res.status === 200 ? undefined : res.text.slice(0, 200),
    });
  }
  return cut;
}

function verdictWhole(rows) {
  const line = (r) =>
    `${r.tenant} ${r.charged.prompt}+${r.charged.completion}` +
    (r.answer ? ` (answer ${r.answer.prompt}+${r.answer.completion})` : " (answer carries none)") +
    ` (engine ${r.engine.prompt}${r.n > 1 ? ` = ${r.n}×${r.engine.prompt / r.n}` : ""}+${r.engine.completion})`;
  const bad = rows.filter(
    (r) =>
      r.status !== 200 ||
      r.strippedSeen ||
      r.charged.completion === 0 ||
      (r.answer !== undefined &&
        (r.answer.prompt !== r.charged.prompt || r.answer.completion !== r.charged.completion)) ||
      (r.answer === undefined && !r.tenant.endsWith("-stripped")) ||
      r.engine.prompt !== r.n * r.charged.prompt ||
      r.engine.completion !== r.charged.completion,
  );
  const text = rows.map(line).join("; ");
  if (bad.length)
    throw new Error(
      `${bad.length}/${rows.length} not charged their usage: ${bad.map((r) => `${line(r)} status ${r.status}${r.strippedSeen ? " usage event relayed" : ""}${r.error ? ` ${r.error}` : ""}`).join("; ")} — all: ${text}`,
    );
  return `${rows.length}/${rows.length} charged prompt+completion = the answer's usage = the engine's counters (its prompt counter counts each of n answers): ${text}`;
}

function verdictCut(rows) {
  const line = (r) =>
    `${r.tenant} generated ${r.generated}, charged ${r.charged} (cut after ${r.events} events)`;
  const bad = rows.filter((r) => r.status !== 200 || r.generated <= 0 || r.charged < r.generated);
  if (bad.length)
    throw new Error(
      `${bad.length}/${rows.length}: ${bad.map((r) => `${line(r)} status ${r.status} ${r.error ?? ""}`).join("; ")}`,
    );
  return rows.map(line).join("; ");
}
