// Text that cannot be cut into short slices (one pre-tokenizer piece, such as 100 000 spaces or a
// long run of letters without a space, costs the Llama 3 library ~7 µs a character: 16 MiB of it
// would hold an event loop for minutes) is encoded on a worker thread instead. Rare: ordinary text
// has a cut point every few characters. One worker per process, started on first use, unref'd.
import { Worker } from "node:worker_threads";

interface Pending {
  resolve: (ids: number[]) => void;
  reject: (err: Error) => void;
}

/** texts waiting for the worker at once; beyond, callers get an error (the worker is saturated) */
const MAX_PENDING = 64;

class TokenizerThread {
  private worker: Worker | undefined;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();

  private start(): Worker {
    const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
    const w = new Worker(new URL(`./offload-worker${ext}`, import.meta.url));
    w.unref();
    w.on("message", (m: { id: number; ids?: Int32Array; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ids) p.resolve(Array.from(m.ids));
      else p.reject(new Error(m.error ?? "tokenizer worker failed"));
      if (this.pending.size === 0) w.unref();
    });
    const fail = (err: Error) => {
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      this.worker = undefined;
    };
    w.on("error", fail);
    w.on("exit", (code) => fail(new Error(`tokenizer worker exited with ${code}`)));
    return w;
  }

  /** `family`'s encode(text, false) (added tokens recognised, no BOS), on the worker thread. */
  encode(family: string, text: string): Promise<number[]> {
    if (this.pending.size >= MAX_PENDING)
      return Promise.reject(new Error("the tokenizer worker has too much text queued"));
    this.worker ??= this.start();
    // referenced while it owes answers, so a process waiting only for it stays alive
    this.worker.ref();
    const id = ++this.seq;
    return new Promise<number[]>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker!.postMessage({ id, family, text });
    });
  }
}

export const tokenizerThread = new TokenizerThread();
