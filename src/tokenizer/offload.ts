// Tokenising on a worker thread, for two cases: text that cannot be cut into short slices (one
// pre-tokenizer piece, such as 100 000 spaces or a long run of letters without a space, costs the
// Llama 3 library ~7 µs a character: 16 MiB of it would hold an event loop for minutes), and counting
// a huge prompt at the router's edge, where even sliced tokenising spent half a CPU-second of the
// router's loop (and its garbage) per megabyte prompt. One worker per process, started on first use
// (its tables cost ~120 MiB and a second to load) and stopped after IDLE_MS without work, so a
// process that never sees such text never pays for it; counting uses it only once it is warm.
//
// Work is for someone (eventloop/turns.ts's Cancellable): a megabyte count takes the worker seconds, and a
// client that leaves meanwhile must not keep it busy while others wait. So asks wait here, not in the
// worker's message queue, and go to it one at a time: one given up while waiting is never sent, and
// the one under way is stopped at its next chunk through a flag shared with the worker, which a
// timer raises once the ask's owner is cancelled (an owner is read, not notified).
import { Worker } from "node:worker_threads";
import { WorkCancelled, type Cancellable } from "../eventloop/turns.js";
import { CapacityError, PeerError } from "../errors/index.js";

/** what the worker is sent (offload-worker.ts) */
export interface WorkerAsk {
  id: number;
  family: string;
  text: string;
  addSpecialTokens: boolean;
  keep: number;
}

interface Ask extends WorkerAsk {
  owner: Cancellable | undefined;
  resolve: (r: { count: number; ids: number[] }) => void;
  reject: (err: Error) => void;
}

/** what the worker answers */
export interface WorkerAnswer {
  id: number;
  ids?: Int32Array;
  count?: number;
  stopped?: boolean;
  error?: string;
}

/** asks waiting or under way at once; beyond, callers get an error (the worker is saturated) */
const MAX_PENDING = 64;
/** an idle worker is stopped after this long (it is started again on demand) */
const IDLE_MS = 10 * 60_000;
/** how often the owner of the ask under way is read while the worker counts */
const WATCH_MS = 20;

class TokenizerThread {
  private worker: Worker | undefined;
  private seq = 0;
  /** asks not yet sent, oldest first */
  private readonly waiting: Ask[] = [];
  /** the ask the worker has, if any */
  private current: Ask | undefined;
  /** shared with the worker: 1 asks it to stop the current ask */
  private readonly stop = new Int32Array(new SharedArrayBuffer(4));
  private watch: NodeJS.Timeout | undefined;
  private idle: NodeJS.Timeout | undefined;
  /** families the running worker has loaded (it answered for them) */
  private readonly loaded = new Set<string>();

  private start(): Worker {
    const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
    const w = new Worker(new URL(`./offload-worker${ext}`, import.meta.url), {
      workerData: { stop: this.stop.buffer },
    });
    w.unref();
    w.on("message", (m: WorkerAnswer) => {
      const a = this.current;
      if (!a || a.id !== m.id) return;
      this.finish();
      if (m.ids) {
        this.loaded.add(a.family);
        a.resolve({ count: m.count ?? m.ids.length, ids: Array.from(m.ids) });
      } else if (m.stopped) {
        this.loaded.add(a.family);
        a.reject(new WorkCancelled());
      } else a.reject(new PeerError(m.error ?? "tokenizer worker failed"));
      this.next();
    });
    const fail = (err: Error) => {
      if (this.worker !== w) return;
      const owed = this.current ? [this.current, ...this.waiting] : [...this.waiting];
      this.finish();
      this.waiting.length = 0;
      this.worker = undefined;
      this.loaded.clear();
      for (const a of owed) a.reject(err);
    };
    w.on("error", fail);
    w.on("exit", (code) => fail(new PeerError(`tokenizer worker exited with ${code}`)));
    return w;
  }

  private finish(): void {
    this.current = undefined;
    clearInterval(this.watch);
    this.watch = undefined;
  }

  /** Sends the oldest ask still wanted, or lets the worker rest when none is. */
  private next(): void {
    if (this.current) return;
    let a = this.waiting.shift();
    while (a?.owner?.cancelled) {
      a.reject(new WorkCancelled());
      a = this.waiting.shift();
    }
    if (!a) {
      if (this.worker) this.rest(this.worker);
      return;
    }
    clearTimeout(this.idle);
    this.worker ??= this.start();
    // referenced while it owes an answer, so a process waiting only for it stays alive
    this.worker.ref();
    this.current = a;
    Atomics.store(this.stop, 0, 0);
    const { id, family, text, addSpecialTokens, keep, owner } = a;
    this.worker.postMessage({ id, family, text, addSpecialTokens, keep } satisfies WorkerAsk);
    if (owner) {
      this.watch = setInterval(() => {
        if (owner.cancelled) Atomics.store(this.stop, 0, 1);
      }, WATCH_MS);
      this.watch.unref();
    }
  }

  /** Nothing owed: unref'd, and stopped after IDLE_MS unless work comes. */
  private rest(w: Worker): void {
    w.unref();
    clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      if (this.current || this.worker !== w) return;
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
  async encode(family: string, text: string, owner?: Cancellable): Promise<number[]> {
    return (await this.count(family, text, false, Infinity, owner)).ids;
  }

  /**
   * `family`'s encode(text, addSpecialTokens): how many ids, and the first `keep` of them. Rejects
   * with WorkCancelled once `owner` is cancelled, whether the ask was waiting or under way.
   */
  count(
    family: string,
    text: string,
    addSpecialTokens: boolean,
    keep: number,
    owner?: Cancellable,
  ): Promise<{ count: number; ids: number[] }> {
    if (this.owed() >= MAX_PENDING) this.dropCancelled();
    if (this.owed() >= MAX_PENDING)
      return Promise.reject(new CapacityError("the tokenizer worker has too much text queued"));
    return new Promise((resolve, reject) => {
      this.waiting.push({ id: ++this.seq, family, text, addSpecialTokens, keep, owner, resolve, reject });
      this.next();
    });
  }

  /** asks waiting or under way */
  private owed(): number {
    return this.waiting.length + (this.current ? 1 : 0);
  }

  /** asks given up while waiting leave the line at once, so they take no place in it */
  private dropCancelled(): void {
    let kept = 0;
    for (const a of this.waiting) {
      if (a.owner?.cancelled) a.reject(new WorkCancelled());
      else this.waiting[kept++] = a;
    }
    this.waiting.length = kept;
  }
}

export const tokenizerThread = new TokenizerThread();
