// `switchyard up --kv-curve`: the run's keypairs (one per engine, one for the router) reach the engines
// and the router, the router routes a
// repeated prompt by the engine's KV events over CURVE (a kv-hit), no handshake fails, and the key
// directory is gone once the stack stops.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnCli, upArgs, waitForHttp } from "../../bench/support/cli.js";

const MODEL = "Qwen/Qwen2.5-0.5B-Instruct";

async function metric(url: string, re: RegExp): Promise<number> {
  const m = re.exec(await (await fetch(`${url}/metrics`)).text());
  return m ? Number(m[1]) : 0;
}

test("up --kv-curve: each engine gets a keypair of its own, the router routes by their CURVE-protected KV events, and the keys are removed at stop", async () => {
  // the stack's temporary directory is looked for here, away from other tests' files
  const tmp = mkdtempSync(join(tmpdir(), "switchyard-up-curve-test-"));
  const up = await upArgs(2, ["--model", MODEL, "--policy", "kv", "--kv-curve", "--time-scale", "0.1"]);
  const stack = spawnCli(up.args, { TMPDIR: tmp });
  const router = `http://127.0.0.1:${up.port}`;
  try {
    await waitForHttp(`${router}/ready`, 60_000);
    const dirs = readdirSync(tmp).filter((n) => n.startsWith("switchyard-kv-curve-"));
    assert.equal(dirs.length, 1, "one key directory for the run");
    const root = join(tmp, dirs[0]!);
    const publicKeys = [0, 1].map((i) =>
      readFileSync(join(root, `engine-${i}`, "public.key"), "utf8").trim(),
    );
    assert.notEqual(publicKeys[0], publicKeys[1], "one keypair per engine");
    const engineKeys = readFileSync(join(root, "router", "engines.keys"), "utf8")
      .trim()
      .split("\n");
    assert.deepEqual(
      engineKeys.map((l) => l.split(" ")[1]),
      publicKeys,
      "the router believes each engine by its own key",
    );
    const body = {
      model: MODEL,
      messages: [
        { role: "system", content: "Describe the rivers of Europe in careful detail. ".repeat(30) },
        { role: "user", content: "Which is longest?" },
      ],
      max_tokens: 2,
    };
    const hits = /switchyard_routing_decisions_total\{[^}]*reason="kv-hit"[^}]*\} (\d+)/;
    // the first request stores the prompt's blocks; their events reach the router; a repeat hits them
    for (let i = 0; (await metric(router, hits)) === 0; i++) {
      assert.ok(i < 200, `no kv-hit decision:\n${stack.output().slice(-3000)}`);
      const r = await fetch(`${router}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      assert.equal(r.status, 200);
      await r.arrayBuffer();
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(
      await metric(router, /switchyard_zmq_auth_failures_total\{socket="kv-subscriber"\} (\d+)/),
      0,
    );
    assert.doesNotMatch(stack.output(), /CURVE handshake/);
  } finally {
    const code = await stack.stop("SIGINT");
    assert.equal(code, 0, stack.output().slice(-2000));
    const left = readdirSync(tmp).filter((n) => n.startsWith("switchyard-kv-curve-"));
    rmSync(tmp, { recursive: true, force: true });
    assert.deepEqual(left, [], "the key directory outlived the stack");
  }
});
