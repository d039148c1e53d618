// Tokenising on a worker thread, for two cases: text that cannot be cut into short slices (one
// pre-tokenizer piece, such as 100 000 spaces or a long run of letters without a space, costs the
// Llama 3 library ~7 µs a character: 16 MiB of it would hold an event loop for minutes), and counting
// a huge prompt at the router's edge, where even sliced tokenising spent half a CPU-second of the
// router's loop (and its garbage) per megabyte prompt. One worker per process, started on first use
// (its tables cost ~120 MiB and a second to load) and stopped after IDLE_MS without work, so a
// process that never sees such text never pays for it; counting uses it only once it is warm.
import { Worker } from "node:worker_threads";

interface Pending {
  resolve: (r: { count: number; ids: number[] }) => void;
  reject: (err: Error) => void;
}

/** texts waiting for the worker at once; beyond, callers get an error (the worker is saturated) */
const MAX_PENDING = 64;
/** an idle worker is stopped after this long (it is started again on demand) */
const IDLE_MS = 10 * 60_000;

class TokenizerThread {
  private worker: Worker | undefined;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();
  private idle: NodeJS.Timeout | undefined;
  /** families the running worker has loaded (it answered for them) */
  private readonly loaded = new Set<string>();

  private start(): Worker {
    const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
    const w = new Worker(new URL(`./offload-worker${ext}`, import.meta.url));
    w.unref();
    w.on("message", (m: { id: number; ids?: Int32Array; count?: number; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ids) p.resolve({ count: m.count ?? m.ids.length, ids: Array.from(m.ids) });
      else p.reject(new Error(m.error ?? "tokenizer worker failed"));
      if (this.pending.size === 0) this.rest(w);
    });
    const fail = (err: Error) => {
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      this.worker = undefined;
      this.loaded.clear();
    };
    w.on("error", fail);
    w.on("exit", (code) => {
      if (this.worker === w) fail(new Error(`tokenizer worker exited with ${code}`));
    });
    return w;
  }

  /** Nothing owed: unref'd, and stopped after IDLE_MS unless work comes. */
  private rest(w: Worker): void {
    w.unref();
    clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      if (this.pending.size > 0 || this.worker !== w) return;
      this.worker = undefined;
      this.loaded.clear();
      void w.terminate();
    }, IDLE_MS);
    this.idle.unref();
  }

  /** True once the worker has `family` loaded: work sent now is not held up by a load. */
  ready(family: string): boolean {
    return this.worker !== undefined && this.loaded.has(family);
  }

  /** Starts loading `family` on the worker (if not under way), without waiting. */
  warm(family: string): void {
    if (this.warming.has(family) || this.ready(family)) return;
    this.warming.add(family);
    this.count(family, "", false, 0)
      .catch(() => undefined)
      .finally(() => this.warming.delete(family));
  }
  private readonly warming = new Set<string>();

  /** `family`'s encode(text, false) (added tokens recognised, no BOS), on the worker thread. */
  async encode(family: string, text: string): Promise<number[]> {
    return (await this.count(family, text, false, Infinity)).ids;
  }

  /** `family`'s encode(text, addSpecialTokens): how many ids, and the first `keep` of them. */
  count(
    family: string,
    text: string,
    addSpecialTokens: boolean,
    keep: number,
  ): Promise<{ count: number; ids: number[] }> {
    if (this.pending.size >= MAX_PENDING)
      return Promise.reject(new Error("the tokenizer worker has too much text queued"));
    clearTimeout(this.idle);
    this.worker ??= this.start();
    // referenced while it owes answers, so a process waiting only for it stays alive
    this.worker.ref();
    const id = ++this.seq;
    return new Promise<{ count: number; ids: number[] }>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker!.postMessage({ id, family, text, addSpecialTokens, keep });
    }).then((r) => {
      this.loaded.add(family);
      return r;
    });
  }
}

export const tokenizerThread = new TokenizerThread();
