// What each priority band meets when every engine holds its in-flight cap. A sheddable tenant's
// request (priority below 0) is refused with 429 and Retry-After as soon as its headers are
// authenticated, before a byte of its body is read — the queue would refuse it all the same, and the
// body, its parse and its routing would be work for nothing (shown with a body that never comes: only
// a refusal decided at the headers can answer it). A tenant above the default priority takes the room
// kept above the cap (admission.topBandHeadroom) at once, while the default band waits for the cap.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, request, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { hashKey } from "../../../src/tenancy/keys.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";

const MODEL = "fake/m";
const KEY_STD = "sk-early-std-0000000000";
const KEY_SHED = "sk-early-shed-000000000";
const KEY_TOP = "sk-early-top-0000000000";

/** An engine that holds every generation request until `open()`. */
async function gatedEngine() {
  let held = 0;
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  const answer = (res: ServerResponse, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on("end", () => {
      const path = (req.url ?? "/").split("?")[0];
      if (req.method !== "POST") {
        if (path === "/metrics") return void res.writeHead(200, { "content-type": "text/plain" }).end("");
        if (path !== "/v1/models") return answer(res, {});
        return answer(res, { object: "list", data: [{ id: MODEL, object: "model", max_model_len: 8192 }] });
      }
      held++;
      void opened.then(() =>
        answer(res, {
          id: "cmpl-1",
          object: "text_completion",
          model: MODEL,
          choices: [{ index: 0, text: "ok", finish_reason: "length" }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = () => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  };
  return { url, held: () => held, open, close };
}

/** Headers of a chunked POST whose body never comes: the status and Retry-After of the answer. */
function headersOnly(
  url: string,
  key: string,
): Promise<{ status: number; retryAfter: string; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(`${url}/v1/completions`);
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      },
      (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString("utf8")));
        res.on("end", () => {
          req.destroy();
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: String(res.headers["retry-after"] ?? ""),
            body,
          });
        });
      },
    );
    req.on("error", reject);
    req.flushHeaders(); // the headers go; no body byte ever does
  });
}

test("a sheddable tenant's request is refused with 429 and Retry-After at its headers when every engine is full, before its body is read", async () => {
  const eng = await gatedEngine();
  const r = await routerFor([eng.url], {
    admission: { maxInFlightPerEngine: 1 },
    tenancy: {
      tenants: { std: { priority: 0 }, shed: { priority: -1 } },
      keys: [
        { hash: hashKey(KEY_STD), tenant: "std" },
        { hash: hashKey(KEY_SHED), tenant: "shed" },
      ],
    },
  });
  try {
    const body = { model: MODEL, prompt: "hold", max_tokens: 1 };
    const holding = post(`${r.url}/v1/completions`, body, { authorization: `Bearer ${KEY_STD}` });
    await waitUntil(() => eng.held() === 1, 30_000, "the engine's only slot taken");
    const refused = await headersOnly(r.url, KEY_SHED);
    assert.equal(refused.status, 429, refused.body);
    assert.equal(refused.retryAfter, "1");
    assert.match(refused.body, /'shed' is sheddable/);
    eng.open();
    assert.equal((await holding).status, 200);
    // with room, the same tenant's request goes through
    const ok = await post(`${r.url}/v1/completions`, body, { authorization: `Bearer ${KEY_SHED}` });
    assert.equal(ok.status, 200, await ok.text());
  } finally {
    await r.close(1000);
    await eng.close();
  }
});

test("a top-band tenant's request starts at once in the headroom above a full engine's cap, while a default-band one waits for the cap", async () => {
  const eng = await gatedEngine();
  const r = await routerFor([eng.url], {
    admission: { maxInFlightPerEngine: 1, topBandHeadroom: 1 },
    tenancy: {
      tenants: { std: { priority: 0 }, top: { priority: 10 } },
      keys: [
        { hash: hashKey(KEY_STD), tenant: "std" },
        { hash: hashKey(KEY_TOP), tenant: "top" },
      ],
      // a hang guard: nothing here waits for it
      queue: { timeout: "60s" },
    },
  });
  try {
    const body = { model: MODEL, prompt: "hold", max_tokens: 1 };
    const send = (key: string) => post(`${r.url}/v1/completions`, body, { authorization: `Bearer ${key}` });
    const first = send(KEY_STD);
    await waitUntil(() => eng.held() === 1, 30_000, "the engine's cap taken");
    const waiting = send(KEY_STD);
    await waitUntil(() => r.router.queue.depth === 1, 30_000, "the second default-band request queued");
    const top = send(KEY_TOP);
    await waitUntil(() => eng.held() === 2, 30_000, "the top band's request at the engine");
    assert.equal(r.router.queue.depth, 1, "the default band still waits");
    eng.open();
    for (const res of await Promise.all([first, waiting, top])) assert.equal(res.status, 200);
    assert.equal(eng.held(), 3);
  } finally {
    await r.close(1000);
    await eng.close();
  }
});
