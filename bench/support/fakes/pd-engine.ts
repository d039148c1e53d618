// A stand-in for a vLLM engine in a disaggregated prefill/decode pool, for the tests of what the router
// sends each pool (bodies, headers, credentials): a plain node:http server that records every request,
// answers the router's probes and scrapes, and answers a chat as either side would: with its own
// kv_transfer_params when asked to prefill for a remote decode, without them otherwise.
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** The kv_transfer_params a prefill answer carries: what the router must hand the decode engine. */
export const PREFILL_KV = { remote_engine_id: "the-prefill-engine", remote_block_ids: [7] };

export interface PdSeen {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

export interface PdEngine {
  url: string;
  /** every request, probes and scrapes included, oldest first */
  seen: PdSeen[];
  /** the JSON bodies of the chats and completions it answered, oldest first */
  bodies: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/**
 * A P/D engine serving `model`, reporting `version` on /version. Completions get the same answer as
 * a chat (the tests read what the engine was sent, not what it answers); other POSTs get vLLM's 404.
 */
export async function startPdEngine(model: string, version = "0.32.0"): Promise<PdEngine> {
  const seen: PdSeen[] = [];
  const bodies: Array<Record<string, unknown>> = [];
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    seen.push({ method: req.method ?? "", path, headers: req.headers });
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const json = (v: unknown, type = "application/json") => {
        const body = typeof v === "string" ? v : JSON.stringify(v);
        res.writeHead(200, { "content-type": type, "content-length": Buffer.byteLength(body) });
        res.end(body);
      };
      if (path === "/health") return json("", "text/plain");
      if (path === "/version") return json({ version });
      if (path === "/v1/models")
        return json({
          object: "list",
          data: [{ id: model, object: "model", root: model, max_model_len: 4096 }],
        });
      if (path === "/metrics")
        return json(
          `vllm:num_requests_running{model_name="${model}"} 0\nvllm:num_requests_waiting{model_name="${model}"} 0\n`,
          "text/plain",
        );
      if (path !== "/v1/chat/completions" && path !== "/v1/completions") {
        res.writeHead(404, { "content-type": "application/json" });
        return void res.end('{"detail":"Not Found"}');
      }
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, unknown>;
      bodies.push(body);
      const prefill = (body.kv_transfer_params as { do_remote_decode?: boolean } | undefined)
        ?.do_remote_decode;
      if (body.stream === true) {
        res.writeHead(200, { "content-type": "text/event-stream" });
        const chunk = {
          id: "c",
          object: "chat.completion.chunk",
          model,
          choices: [{ index: 0, delta: { content: "ok" }, finish_reason: "stop" }],
        };
        return void res.end(`data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`);
      }
      json({
        id: "c",
        object: "chat.completion",
        model,
        choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
        usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
        kv_transfer_params: prefill ? PREFILL_KV : null,
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    bodies,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
