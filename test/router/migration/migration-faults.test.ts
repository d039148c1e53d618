// How each kind of mid-stream break is migrated, against stand-in engines that answer with the
// chaos run's toy model (every token a function of the whole context, vLLM's return_token_ids): an
// engine that breaks after a few tokens — an in-stream error event, silence, a clean close — and a
// healthy one that continues. The client's text must be the unbroken answer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { expectedAnswer, nextTokens, promptIds, textOf } from "../../../bench/support/context-model.js";
import { startUpstream } from "../../../bench/support/fakes/tenancy-upstream.js";
import { routerFor, waitUntil } from "../../helpers/router.js";
import { readStream } from "../../../bench/support/sse-client.js";

const MODEL = "bench/m";

type Break = "error" | "silence" | "close";

/**
 * A stand-in that streams `after` tokens of the toy model's answer, then breaks the way it is told
 * once `release()` is called (so the test decides when the other engine is there to move to).
 */
async function breakingEngine(
  how: Break,
  after: number,
): Promise<{ url: string; streaming: () => boolean; release(): void; close(): Promise<void> }> {
  const models = JSON.stringify({ object: "list", data: [{ id: MODEL, object: "model", parent: null }] });
  let streaming = false;
  let release: () => void = () => undefined;
  const released = new Promise<void>((r) => (release = r));
  const server: Server = createServer((req, res) => {
    if (req.method === "GET") {
      res.writeHead(200, { "content-type": req.url === "/v1/models" ? "application/json" : "text/plain" });
      return void res.end(req.url === "/v1/models" ? models : "");
    }
    let raw = "";
    req.on("data", (c: Buffer) => (raw += c.toString()));
    req.on("end", () => {
      const doc = JSON.parse(raw) as Record<string, unknown>;
      const prompt = promptIds(doc, false);
      const out = nextTokens(prompt, after);
      res.writeHead(200, { "content-type": "text/event-stream" });
      out.forEach((id, i) =>
        res.write(
          `data: ${JSON.stringify({
            id: "cmpl-x",
            object: "text_completion",
            created: 1,
            model: MODEL,
            choices: [
              {
                index: 0,
                text: textOf([id]),
                logprobs: null,
                finish_reason: null,
                stop_reason: null,
                prompt_token_ids: i === 0 ? prompt : null,
                token_ids: [id],
              },
            ],
          })}\n\n`,
        ),
      );
      streaming = true;
      void released.then(() => {
        if (how === "error") {
          const e = {
            error: {
              message: "EngineCore encountered an issue",
              type: "InternalServerError",
              param: null,
              code: 500,
            },
          };
          res.end(`data: ${JSON.stringify(e)}\n\ndata: [DONE]\n\n`);
        } else if (how === "close") res.end();
        // silence: nothing more, the connection stays open
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    streaming: () => streaming,
    release: () => release(),
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** A router with only the breaking engine, a stream on it, then the good engine added. */
async function streamOnBroken(
  broken: Awaited<ReturnType<typeof breakingEngine>>,
  goodUrl: string,
  extra: Parameters<typeof routerFor>[1],
  body: Record<string, unknown>,
) {
  const router = await routerFor([broken.url], extra);
  const s = readStream(router.url, body, "completion");
  await waitUntil(broken.streaming, 5000, "the stream on the breaking engine");
  router.router.registry.upsert({ url: goodUrl, weight: 1 });
  await waitUntil(
    () => router.router.registry.engines.get(goodUrl)?.healthy === true,
    5000,
    "the good engine",
  );
  broken.release();
  await s.done;
  return { router, s };
}

for (const [how, reason] of [
  ["error", "error_event"],
  ["silence", "idle_timeout"],
  ["close", "closed"],
] as const) {
  test(`a stream whose engine breaks off mid-answer (${how}) moves and reads as the unbroken answer`, async () => {
    const broken = await breakingEngine(how, 7);
    const good = await startUpstream({ context: true, model: MODEL });
    const body = { model: MODEL, prompt: "the same question", max_tokens: 30 };
    const { router, s } = await streamOnBroken(broken, good.url, { timeouts: { idle: 400 } }, body);
    try {
      assert.match(s.route, new RegExp(broken.url));
      assert.deepEqual(s.errors, [], "the engine's error event never reached the client");
      assert.equal(s.dones, 1);
      assert.equal(s.text, expectedAnswer(body, false, 30));
      const m = await (await fetch(`${router.url}/metrics`)).text();
      assert.match(
        m,
        new RegExp(`switchyard_migrations_total\\{[^}]*reason="${reason}",outcome="continued"\\} 1`),
      );
    } finally {
      await router.close();
      await broken.close();
      await good.close();
    }
  });
}

test("a stream that may not move (n > 1, or past migration.maxPerRequest) ends with an error event saying why, counted", async () => {
  for (const [extra, body, why] of [
    [
      {},
      { n: 2 },
      /ended the stream before \[DONE\]; the stream could not move to another engine: more than one choice/,
    ],
    [{ migration: { maxPerRequest: 0 } }, {}, /could not move to another engine: it moved 0 times already/],
  ] as const) {
    const broken = await breakingEngine("close", 3);
    const good = await startUpstream({ context: true, model: MODEL });
    const req = { model: MODEL, prompt: "q", max_tokens: 30, ...body };
    const { router, s } = await streamOnBroken(broken, good.url, extra, req);
    try {
      assert.equal(s.errors.length, 1);
      assert.match(s.errors[0]!, why);
      assert.equal(s.dones, 1);
      const m = await (await fetch(`${router.url}/metrics`)).text();
      assert.match(m, /switchyard_migrations_total\{[^}]*outcome="(not_migratable|limit)"\} 1/);
    } finally {
      await router.close();
      await broken.close();
      await good.close();
    }
  }
});
