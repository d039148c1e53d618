// Disaggregated prefill/decode end to end: two NixlConnector producer sims, two consumer sims and one
// router. The openai client sees ordinary answers (chat and completions, streamed and not); the
// producers saw max_tokens 1 and do_remote_decode; the consumers got the params, pulled the KV
// instead of computing the prompt, and their TTFT is at least the modelled transfer, which the model
// puts far below a prefill (wall-clock TTFTs are only held to lower bounds); a stopped
// producer fails over to the other; a prefill 400 reaches the client in OpenAI format.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { RunningSim } from "../../../src/sim/app.js";
import { StepTimer } from "../../../src/engine/index.js";
import { prefillStepSeconds } from "../../../bench/support/model.js";
import type { RunningRouter } from "../../../src/router/index.js";
import { getText, metric, startTestSim } from "../../sim/helpers.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
/** every modelled duration × 4, so a prefill is long against loopback noise */
const TIME_SCALE = 4;
const nixl = (role: string) => [
  "--kv-transfer-config",
  JSON.stringify({ kv_connector: "NixlConnector", kv_role: role }),
];

let producers: RunningSim[] = [];
let consumers: RunningSim[] = [];
let router: RunningRouter;
let client: OpenAI;

async function metrics(s: RunningSim): Promise<string> {
  return (await getText(`${s.url}/metrics`)).text;
}
/** Sum over sims of the samples named `name` whose labels include `labels` (e.g. 'le="1"'). */
async function sum(sims: RunningSim[], name: string, labels = ""): Promise<number> {
  let total = 0;
  for (const s of sims) {
    if (!labels) {
      total += metric(await metrics(s), name);
      continue;
    }
    for (const line of (await metrics(s)).split("\n")) {
      if (line.startsWith(`${name}{`) && line.includes(labels))
        total += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return total;
}

before(async () => {
  const common = ["--time-scale", String(TIME_SCALE), "--max-model-len", "16384"];
  producers = await Promise.all([0, 1].map(() => startTestSim(MODEL, [...common, ...nixl("kv_producer")])));
  consumers = await Promise.all([0, 1].map(() => startTestSim(MODEL, [...common, ...nixl("kv_consumer")])));
  router = await routerFor(
    [
      ...producers.map((p) => ({ url: p.url, role: "prefill" as const })),
      ...consumers.map((c) => ({ url: c.url, role: "decode" as const })),
    ],
    // round-robin within each pool: these requests come one at a time, and least-load would keep them
    // on the engine that answered last (it holds their context); round-robin makes both engines serve
    { policy: "round-robin" },
  );
  await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 5000, "all engines");
  client = new OpenAI({ baseURL: `${router.url}/v1`, apiKey: "x", maxRetries: 0 });
});

after(async () => {
  await router?.close();
  for (const s of [...producers, ...consumers]) await s.close();
});

test("chat and completions, streamed and not: prefill engines see max_tokens 1, decode engines pull the KV", async () => {
  const question = "Explain disaggregated serving in one paragraph. ".repeat(40);
  const chat = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: "user", content: question }],
    max_tokens: 12,
    ignore_eos: true,
  } as OpenAI.ChatCompletionCreateParamsNonStreaming);
  assert.equal(chat.object, "chat.completion");
  assert.equal(chat.choices[0]!.finish_reason, "length");
  assert.equal(chat.usage!.completion_tokens, 12);
  assert.ok(chat.choices[0]!.message.content!.length > 0, "chat content");

  const done = await client.completions.create({
    model: MODEL,
    prompt: question,
    max_tokens: 7,
    ignore_eos: true,
  } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.equal(done.usage!.completion_tokens, 7);

  // streams pass through as the decode engine produces them: chunk by chunk, spread over the decode
  const arrivals: number[] = [];
  let text = "";
  let usage: OpenAI.CompletionUsage | undefined;
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: "user", content: `${question} (streamed)` }],
    max_tokens: 24,
    ignore_eos: true,
    stream: true,
    stream_options: { include_usage: true },
  } as OpenAI.ChatCompletionCreateParamsStreaming);
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta?.content;
    if (delta) {
      text += delta;
      arrivals.push(performance.now());
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.ok(text.length > 0, "streamed chat text");
  assert.equal(usage?.completion_tokens, 24);
  // steps the sim completes back to back (catching up after a late timer on a busy machine) share a
  // chunk, so the count is not fixed; the spread is a lower bound no load can shrink
  assert.ok(arrivals.length >= 2, `${arrivals.length} content chunks`);
  // 23 decode steps of ≥ 6 ms modelled each, × 4: a buffered relay would deliver them all at once
  assert.ok(
    arrivals.at(-1)! - arrivals[0]! > 150,
    `chunks spread over ${arrivals.at(-1)! - arrivals[0]!} ms`,
  );

  let ctext = "";
  const cstream = await client.completions.create({
    model: MODEL,
    prompt: `${question} (streamed completion)`,
    max_tokens: 5,
    ignore_eos: true,
    stream: true,
  } as OpenAI.CompletionCreateParamsStreaming);
  for await (const chunk of cstream) ctext += chunk.choices[0]?.text ?? "";
  assert.ok(ctext.length > 0, "streamed completion text");

  // four requests: four prefills of one token each, answered with kv_transfer_params
  assert.equal(await sum(producers, "switchyard_sim_nixl_prefills_total"), 4);
  assert.equal(await sum(producers, "vllm:request_params_max_tokens_bucket", 'le="1"'), 4);
  assert.equal(await sum(producers, "vllm:request_params_max_tokens_count"), 4);
  assert.equal(await sum(producers, "vllm:request_generation_tokens_sum"), 4);
  assert.equal(await sum(producers, "switchyard_sim_nixl_reads_served_total"), 4);
  assert.equal(await sum(producers, "switchyard_sim_nixl_held_requests"), 0);

  // the decode engines got the params and pulled the prompts instead of computing them
  const promptTokens = await sum(consumers, "vllm:prompt_tokens_total");
  const transferred = await sum(consumers, "switchyard_sim_nixl_transferred_tokens_total");
  assert.equal(await sum(consumers, "switchyard_sim_nixl_transfers_total"), 4);
  assert.ok(transferred > 0.98 * promptTokens, `${transferred} of ${promptTokens} prompt tokens transferred`);
  // what the engines did not compute came from the transfer, or from their own prefix cache when
  // an earlier request had the same prefix
  const hits =
    (await sum(consumers, "vllm:external_prefix_cache_hits_total")) +
    (await sum(consumers, "vllm:prefix_cache_hits_total"));
  assert.ok(hits > 0.98 * promptTokens, `${hits} of ${promptTokens} prompt tokens not computed`);
  assert.ok((await sum(consumers, "vllm:external_prefix_cache_hits_total")) > 0, "external prefix hits");
  assert.equal(await sum(consumers, "vllm:nixl_num_failed_transfers_total"), 0);
  // tokens the decode engines computed: each prompt's last partial block, plus the outputs
  const computed = await sum(consumers, "vllm:iteration_tokens_total_sum");
  assert.ok(computed < 4 * 16 + 12 + 7 + 24 + 5, `decode engines computed ${computed} tokens`);
  // both decode engines took part (round-robin within the pool)
  for (const c of consumers)
    assert.ok(metric(await metrics(c), "vllm:prompt_tokens_total") > 0, `${c.url} decoded nothing`);
});

test("the decode engine's TTFT is the modelled transfer, not a prefill", async () => {
  const before = await Promise.all([...producers, ...consumers].map(metrics));
  const prompt = "A long shared document about storage systems and their caches. ".repeat(400);
  const r = await client.completions.create({
    model: MODEL,
    prompt,
    max_tokens: 2,
    ignore_eos: true,
  } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.ok(r.usage!.prompt_tokens > 4000, `${r.usage!.prompt_tokens} prompt tokens`);
  const afterText = await Promise.all([...producers, ...consumers].map(metrics));
  const delta = (i: number, name: string) => metric(afterText[i]!, name) - metric(before[i]!, name);
  const ttft = (i: number) => delta(i, "vllm:time_to_first_token_seconds_sum");
  const prefillTtft = ttft(0) + ttft(1);
  const decodeTtft = ttft(2) + ttft(3);
  const xfer = delta(2, "vllm:nixl_xfer_time_seconds_sum") + delta(3, "vllm:nixl_xfer_time_seconds_sum");
  assert.ok(xfer > 0, "a transfer was modelled");
  // the decode engine waited at least the modelled transfer (× time scale): a lower bound no load breaks
  assert.ok(
    decodeTtft >= xfer * TIME_SCALE * 0.95,
    `decode TTFT ${decodeTtft} s, transfer ${xfer * TIME_SCALE} s`,
  );
  // and it did not prefill: it ran the prompt's last partial block and the outputs, not the prompt
  const computed = delta(2, "vllm:iteration_tokens_total_sum") + delta(3, "vllm:iteration_tokens_total_sum");
  assert.ok(computed < 16 + 2 + 16, `decode engines computed ${computed} tokens`);
  // how much shorter than a prefill that wait is, is the model's to say (wall-clock TTFTs on a busy
  // machine are not): the modelled transfer against the modelled prefill step of the same prompt
  const p = r.usage!.prompt_tokens;
  const prefillStep = prefillStepSeconds(new StepTimer(producers[0]!.ctx.runtime.config), p);
  assert.ok(
    xfer < 0.5 * prefillStep,
    `modelled transfer ${xfer} s against a modelled prefill of ${prefillStep} s`,
  );
  assert.ok(prefillTtft >= prefillStep * TIME_SCALE * 0.95, `prefill TTFT ${prefillTtft} s`);
});

test("a prefill 400 reaches the client as an OpenAI error, and no decode engine is asked", async () => {
  const decodeRequests = await sum(consumers, "vllm:request_success_total");
  const res = await post(`${router.url}/v1/completions`, {
    model: MODEL,
    prompt: "x",
    max_tokens: 20_000,
  });
  assert.equal(res.status, 400);
  const body = (await res.json()) as { error: { message: string; type: string; code: number } };
  assert.match(body.error.message, /^max_tokens=20000 cannot be greater than max_model_len=/);
  assert.equal(body.error.type, "BadRequestError");
  assert.equal(body.error.code, 400);
  assert.equal(await sum(consumers, "vllm:request_success_total"), decodeRequests);
});

test("a stopped prefill engine: its requests fail over to the other one", async () => {
  const survivor = producers[0]!;
  const before = metric(await metrics(survivor), "switchyard_sim_nixl_prefills_total");
  await producers[1]!.close();
  // round-robin sends some of them to the stopped engine before any ejection
  const answers = await Promise.all(
    [0, 1, 2, 3].map((i) =>
      client.completions.create({
        model: MODEL,
        prompt: `Request ${i} after a prefill engine stopped. `.repeat(30),
        max_tokens: 3,
        ignore_eos: true,
      } as OpenAI.CompletionCreateParamsNonStreaming),
    ),
  );
  for (const a of answers) assert.equal(a.usage!.completion_tokens, 3);
  assert.equal(metric(await metrics(survivor), "switchyard_sim_nixl_prefills_total") - before, 4);
  const routerMetrics = (await getText(`${router.url}/metrics`)).text;
  const failed = routerMetrics
    .split("\n")
    .filter((l) => l.startsWith("switchyard_disagg_prefill_attempts_total") && l.includes(producers[1]!.url))
    .filter((l) => !l.includes('result="ok"'))
    .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
  assert.ok(failed >= 1, `failed attempts on the stopped engine: ${failed}`);
  assert.ok(!/switchyard_disagg_requests_total\{[^}]*outcome="fallback"/.test(routerMetrics), "no fallback");
  assert.match(routerMetrics, /switchyard_disagg_requests_total\{[^}]*outcome="transferred"[^}]*\} \d/);
});
