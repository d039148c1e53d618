// Large JSON bodies parsed on a worker thread: decoding 5 MB of UTF-8, scanning its nesting depth and
// JSON.parse held an event loop for 40+ ms, and nothing a client sends may hold one for more than a
// few. The parsed object comes back by structured clone (a copy, at memcpy speed). One worker per
// process, started on first use and unref'd while idle; errors come back as the same HttpErrors.
import { Worker } from "node:worker_threads";
import { HttpError } from "./errors.js";
import { PeerError } from "../errors/index.js";

type Reply = { id: number; value?: Record<string, unknown>; status?: number; message?: string };

/** bodies waiting for the worker at once; beyond, 503 (the router sheds rather than queues megabytes) */
const MAX_PENDING = 16;

class JsonThread {
  private worker: Worker | undefined;
  private seq = 0;
  private readonly pending = new Map<number, (r: Reply) => void>();

  private start(): Worker {
    const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
    const w = new Worker(new URL(`./json-thread-worker${ext}`, import.meta.url));
    w.unref();
    w.on("message", (r: Reply) => {
      const settle = this.pending.get(r.id);
      this.pending.delete(r.id);
      if (this.pending.size === 0) w.unref();
      settle?.(r);
    });
    const fail = (err: Error) => {
      for (const settle of this.pending.values()) settle({ id: 0, status: 500, message: err.message });
      this.pending.clear();
      this.worker = undefined;
    };
    w.on("error", fail);
    w.on("exit", (code) => fail(new PeerError(`JSON worker exited with ${code}`)));
    return w;
  }

  parse(body: Buffer): Promise<Record<string, unknown>> {
    if (this.pending.size >= MAX_PENDING)
      return Promise.reject(
        new HttpError(503, "too many large request bodies being parsed; retry later", null, {
          "retry-after": "1",
        }),
      );
    this.worker ??= this.start();
    this.worker.ref();
    const id = ++this.seq;
    // a copy the worker owns: the caller keeps `body` (it is forwarded upstream as it is)
    const bytes = new Uint8Array(body);
    return new Promise((resolve, reject) => {
      this.pending.set(id, (r) => {
        if (r.value) resolve(r.value);
        else reject(new HttpError(r.status ?? 500, r.message ?? "JSON worker failed"));
      });
      this.worker!.postMessage({ id, bytes }, [bytes.buffer]);
    });
  }
}

export const jsonThread = new JsonThread();
