// `switchyard up --prefill N --decode M`: the stack as a disaggregated fleet. The layout (roles, the
// NixlConnector role per engine, TP per role) and its refusals as values; then a real stack of one
// prefill and one decode engine on loopback answers a chat request through the prefill engine and then
// the decode engine (the KV moved between them), says its layout, and stops clean: every port free
// and the router's role file gone. A taken decode-engine port is refused before anything starts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, freeUpPorts, spawnCli, waitForHttp } from "../../bench/support/cli.js";
import { CliError } from "../../src/config/args.js";
import { UP_OPTIONS } from "../../src/cli/up-options.js";
import { engineSlots, routerTp } from "../../src/cli/up-pd.js";

const MODEL = "Qwen/Qwen2.5-0.5B-Instruct";

function slotsOf(flags: Record<string, unknown>, passThrough: string[] = []) {
  const given = new Set(Object.keys(flags));
  const defaults: Record<string, unknown> = { engines: 2 };
  for (const [k, s] of Object.entries(UP_OPTIONS.specs)) defaults[k] = s.default;
  return engineSlots({ ...defaults, ...flags }, given, passThrough);
}

test("up --prefill/--decode: prefill engines first as NixlConnector producers, decode engines after as consumers, each role with its TP", () => {
  const slots = slotsOf({ prefill: 2, decode: 1, "prefill-tp": 1, "decode-tp": 4 }, [
    "--tensor-parallel-size",
    "2",
    "--time-scale",
    "4",
  ]);
  assert.deepEqual(
    slots.map((s) => [s.role, s.tp]),
    [
      ["prefill", 1],
      ["prefill", 1],
      ["decode", 4],
    ],
  );
  const pass = ["--tensor-parallel-size", "2", "--time-scale", "4"];
  assert.deepEqual(slots[0]!.args(pass), [
    "--time-scale",
    "4",
    "--tensor-parallel-size",
    "1",
    "--kv-transfer-config",
    '{"kv_connector":"NixlConnector","kv_role":"kv_producer"}',
  ]);
  assert.match(slots[2]!.args(pass).join(" "), /--tensor-parallel-size 4 .*"kv_role":"kv_consumer"/);
  // the predictive policy times the pick that sets TTFT: the prefill pool's
  assert.equal(routerTp(slots), 1);
  // without role TPs both roles take the one given for every engine
  assert.deepEqual(
    slotsOf({ prefill: 1, decode: 1 }, ["--tensor-parallel-size=2"]).map((s) => s.tp),
    [2, 2],
  );
  // without --prefill/--decode: --engines whole-request engines, the flags untouched
  const plain = slotsOf({ engines: 3 }, ["--time-scale", "4"]);
  assert.deepEqual(
    plain.map((s) => s.role),
    [null, null, null],
  );
  assert.deepEqual(plain[0]!.args(["--time-scale", "4"]), ["--time-scale", "4"]);
  assert.equal(routerTp(plain), null);
});

test("up --prefill/--decode: refuses a half-given layout, --engines beside it, and a KV connector it sets itself", () => {
  assert.throws(() => slotsOf({ prefill: 2 }), CliError);
  assert.throws(() => slotsOf({ decode: 2, prefill: 0 }), CliError);
  assert.throws(() => slotsOf({ prefill: 1, decode: 1, engines: 2 }), /two layouts/);
  assert.throws(() => slotsOf({ "decode-tp": 2 }), /needs --prefill and --decode/);
  assert.throws(
    () =>
      slotsOf({ prefill: 1, decode: 1 }, ["--kv-transfer-config", '{"kv_connector":"LMCacheConnectorV1"}']),
    /set per role/,
  );
  assert.throws(() => slotsOf({ prefill: 1, decode: 1 }, ["--tensor-parallel-size", "two"]), /whole number/);
});

async function metric(url: string, re: RegExp): Promise<number> {
  const m = re.exec(await (await fetch(`${url}/metrics`)).text());
  return m ? Number(m[1]) : 0;
}

async function pdArgs(extra: string[] = []) {
  const port = await freePort();
  const { engineBase, kvBase } = await freeUpPorts(2);
  const args = ["up", "--prefill", "1", "--decode", "1", "--port", String(port)];
  args.push("--engine-base-port", String(engineBase), "--kv-events-base-port", String(kvBase));
  args.push("--model", MODEL, ...extra);
  return { args, port, engineBase, kvBase };
}

test("up --prefill 1 --decode 1: a chat request runs its prefill on the prefill engine and its answer on the decode engine, and the stack stops clean", async () => {
  const tmp = mkdtempSync(join(tmpdir(), "switchyard-up-pd-test-"));
  const up = await pdArgs(["--decode-tp", "2", "--policy", "least-load", "--time-scale", "0.1"]);
  const stack = spawnCli(up.args, { TMPDIR: tmp });
  const router = `http://127.0.0.1:${up.port}`;
  const prefill = `http://127.0.0.1:${up.engineBase}`;
  const decode = `http://127.0.0.1:${up.engineBase + 1}`;
  try {
    await waitForHttp(`${router}/ready`, 60_000, 200, stack);
    // the summary follows the router's readiness
    for (let i = 0; !/Press Ctrl-C/.test(stack.output()); i++) {
      assert.ok(i < 300, `no summary:\n${stack.output().slice(-2000)}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.match(
      stack.output(),
      /Switchyard is up: 1 prefill \(TP 1\) \+ 1 decode \(TP 2\), disaggregated, simulated h100/,
    );
    assert.match(stack.output(), /engine 0 http:\/\/127\.0\.0\.1:\d+ \(prefill\)/);
    assert.match(stack.output(), /engine 1 http:\/\/127\.0\.0\.1:\d+ \(decode\)/);
    assert.equal(readdirSync(tmp).filter((n) => n.startsWith("switchyard-up-pd-")).length, 1);
    const r = await fetch(`${router}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: MODEL,
        messages: [{ role: "user", content: "Summarise the history of the river Rhine. ".repeat(40) }],
        max_tokens: 12,
        ignore_eos: true,
      }),
    });
    const chat = (await r.json()) as {
      choices: { message: { content: string } }[];
      usage: { completion_tokens: number };
    };
    assert.equal(r.status, 200, JSON.stringify(chat));
    assert.equal(chat.usage.completion_tokens, 12);
    assert.ok(chat.choices[0]!.message.content.length > 0);
    // the prefill engine computed the prompt and held its KV; the decode engine read it and answered
    assert.equal(await metric(prefill, /^switchyard_sim_nixl_prefills_total(?:\{[^}]*\})? (\S+)$/m), 1);
    assert.equal(await metric(decode, /^switchyard_sim_nixl_transfers_total(?:\{[^}]*\})? (\S+)$/m), 1);
    assert.equal(
      await metric(router, /^switchyard_disagg_requests_total\{[^}]*outcome="transferred"[^}]*\} (\S+)$/m),
      1,
    );
    // the decode engine generated the answer; the prefill engine one token
    assert.equal(await metric(decode, /^vllm:generation_tokens_total(?:\{[^}]*\})? (\S+)$/m), 12);
    assert.equal(await metric(prefill, /^vllm:generation_tokens_total(?:\{[^}]*\})? (\S+)$/m), 1);
  } finally {
    const code = await stack.stop("SIGINT");
    assert.equal(code, 0, stack.output().slice(-2000));
    const left = readdirSync(tmp).filter((n) => n.startsWith("switchyard-up-pd-"));
    rmSync(tmp, { recursive: true, force: true });
    assert.deepEqual(left, [], "the router's role file outlived the stack");
  }
  for (const u of [router, prefill, decode]) await assert.rejects(fetch(`${u}/health`));
});

test("up --prefill 1 --decode 1: a taken decode-engine port is refused before anything starts", async () => {
  const up = await pdArgs();
  const holder = createServer();
  await new Promise<void>((r) => holder.listen({ port: up.engineBase + 1, host: "127.0.0.1" }, () => r()));
  const stack = spawnCli(up.args);
  try {
    const code = await stack.stop("SIGCONT");
    assert.equal(code, 2, stack.output().slice(-2000));
    assert.match(stack.output(), new RegExp(`port ${up.engineBase + 1} \\(engine 1's HTTP\\)`));
    // nothing was started: the prefill engine's port is still free
    await assert.rejects(fetch(`http://127.0.0.1:${up.engineBase}/health`));
  } finally {
    holder.close();
    await stack.stop("SIGKILL");
  }
});
