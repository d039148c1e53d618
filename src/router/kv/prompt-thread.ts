// A worker thread that works out long prompts for cache-aware routing (tokens, block hashes, chunk
// hashes, prefix ids: prompt-work.ts) so the router's event loop keeps only the lookups and the pick.
// At 500 req/s of 4k-token prompts that work was a third of the loop's CPU (1.6–2.1 ms a request on
// two busy cores), and a loop near one full core queues every stream and decision behind it.
//
// It holds tokenizer tables of its own (a second to load for a big vocabulary; the routing-cost
// benchmark's router peaked 68 MiB higher with it). It is started (`warm`) with a model's tokenizer
// when an engine lists the model (cache-routing.ts loads the loop's copy then too), or at the first
// long prompt of a model loaded neither way, while the loop loads its own copy: started after the
// loop's first WARM_AFTER long prompts, its second of loading came after the loop's, and a router
// started cold under load worked every prompt out on its loop for both. Stopped after IDLE_MS without
// work and started again on demand (the loop has its tokenizer by then), it starts after WARM_AFTER
// long prompts worked out on the loop. It loads a model's tokenizer before it takes that model's
// prompts. Until a model is loaded there, and whenever too much is owed, the loop does the work as
// before: the answers are the same values either way, so no decision depends on which did it. An ask
// is bounded in size (PROMPT_THREAD_MAX_CHARS) and in time: one not answered within ASK_DEADLINE_MS,
// or whose request was cancelled, goes back to the loop (the worker's work for it is then wasted,
// never half used).
import { Worker } from "node:worker_threads";
import { PeerError } from "../../errors/index.js";
import { logger } from "../../obs/log.js";
import type { Cancellable } from "../../eventloop/turns.js";
import { promptChars, type PromptAnswer, type PromptAsk } from "./prompt-work.js";
import type { ThreadData, ThreadMessage } from "./prompt-thread-worker.js";

const log = logger("router.prompt-thread");

/** prompts shorter than this (about 1k tokens) are worked out on the loop: a hop costs more than they do */
export const PROMPT_THREAD_MIN_CHARS = 4096;
/** prompts longer than this (about 128k tokens) are hashed on the loop in slices, as before */
export const PROMPT_THREAD_MAX_CHARS = 512 * 1024;
/** long prompts the loop works out itself before the worker is started */
export const WARM_AFTER = 16;
/** asks sent to the worker and not yet answered; beyond, the loop does the work (the worker is behind) */
const MAX_OWED = 256;
/**
 * an ask not answered this long is given back to the loop (which then hashes the prompt in slices): a
 * stuck worker delays a request by at most this, and a request whose client left is given up at the
 * next sweep
 */
const ASK_DEADLINE_MS = 1000;
/**
 * while the oldest ask the worker has not finished has waited this long beyond its expected work (its
 * characters at the worker's measured pace), the worker is behind and the loop works out new prompts
 * itself. A 4k-token prompt's ask is answered in 0.6 ms at the median and 2-7 ms at p99 on two busy
 * cores; a worker starting cold, or waiting for a core, kept asks waiting 20-150 ms at p95 while the
 * loop had room (it was allowed half of ASK_DEADLINE_MS). Nothing is worked out twice for this. An
 * answer posted but not yet read (`finished`) does not count: a loop at a full core reads late, and
 * taking that for a slow worker kept every prompt on that loop (the worker at 3% of a core).
 */
const BEHIND_MS = 5;
/** how often the asks owed are swept for cancelled and overdue ones */
const SWEEP_MS = 50;
/** an idle worker is stopped after this long (and started again on demand) */
const IDLE_MS = 5 * 60_000;
/** failures after which the worker is not started again (each logged) */
const MAX_FAILURES = 3;

interface Owed {
  resolve: (a: PromptAnswer | undefined) => void;
  /** a tokenizer load's model; undefined for an ask */
  model?: string;
  /** when it was sent (performance.now()) */
  since: number;
  /** an ask's prompt characters */
  chars?: number;
  /** the request it is for: given up once cancelled */
  owner?: Cancellable | undefined;
}

export class PromptThread {
  private worker: Worker | undefined;
  private seq = 0;
  private generation = 0;
  /** what answers are awaited for, oldest first (an ask given up leaves it; its answer is ignored) */
  private readonly owed = new Map<number, Owed>();
  /** messages the worker has been sent and has not answered, given up or not */
  private inWorker = 0;
  /** models whose tokenizer the running worker has loaded, in this generation */
  private readonly loaded = new Set<string>();
  private readonly loading = new Set<string>();
  /** models whose tokenizer the worker could not load where the loop has one: theirs stay on the loop */
  private readonly unusable = new Set<string>();
  private longOnLoop = 0;
  private failures = 0;
  private closed = false;
  private idle: NodeJS.Timeout | undefined;
  private sweep: NodeJS.Timeout | undefined;
  /** shared with the running worker: the id of the last message it has answered */
  private finished = new Int32Array(new SharedArrayBuffer(4));
  /** the worker's pace: ms of work a prompt character, averaged over its answers (0 until one) */
  private msPerChar = 0;
  /** asks answered by the worker, and long prompts the loop worked out itself (given back included) */
  readonly stats = { answered: 0, onLoop: 0 };

  constructor(private dirs: Record<string, string>) {}

  /** New tokenizer folders: the worker's tokenizers are loaded again, answers owed are dropped. */
  configure(dirs: Record<string, string>): void {
    if (JSON.stringify(dirs) === JSON.stringify(this.dirs)) return;
    this.dirs = dirs;
    this.generation++;
    this.loaded.clear();
    this.unusable.clear();
    this.loading.clear();
    // no answer comes: the worker is not held for it (one started later gets the folders itself)
    this.worker?.postMessage({ type: "configure", dirs } satisfies ThreadMessage);
  }

  /**
   * Whether a long prompt (PROMPT_THREAD_MIN_CHARS to _MAX_CHARS) of `model` goes to the worker now;
   * else the loop works it out, and enough of those start the worker and load the model's tokenizer.
   */
  takes(model: string, root: string | undefined): boolean {
    if (this.unusable.has(model) || this.closed) return false;
    if (this.loaded.has(model) && this.worker && this.inWorker < MAX_OWED && !this.behind()) return true;
    this.stats.onLoop++;
    if (++this.longOnLoop >= WARM_AFTER && this.failures < MAX_FAILURES) this.load(model, root);
    return false;
  }

  /**
   * Starts the worker and loads `model`'s tokenizer there now (an engine listed the model, or its
   * first long prompt came while the loop loads its own copy): `takes` then hands its prompts over as
   * soon as the load is done rather than after WARM_AFTER more on the loop.
   */
  warm(model: string, root: string | undefined): void {
    if (this.unusable.has(model) || this.closed || this.failures >= MAX_FAILURES) return;
    this.load(model, root);
  }

  /** the id of the last message the running worker has answered, read or not (tests) */
  get finishedThrough(): number {
    return Atomics.load(this.finished, 0);
  }

  /** the oldest ask the worker has not finished has waited BEHIND_MS beyond its expected work */
  private behind(): boolean {
    const finished = this.finishedThrough;
    for (const [id, o] of this.owed)
      if (o.model === undefined && id > finished)
        return performance.now() - o.since > BEHIND_MS + o.chars! * this.msPerChar;
    return false;
  }

  /** an answer's work (the worker's own clock) folded into the pace expected of the next asks */
  private paced(o: Owed, workMs: number | undefined): void {
    if (workMs === undefined || !o.chars) return;
    this.msPerChar += (workMs / o.chars - this.msPerChar) / (this.msPerChar === 0 ? 1 : 8);
  }

  /**
   * The prompt's values from the worker; undefined where it gave none (the loop then works them out):
   * it failed, the tokenizers changed, it took longer than ASK_DEADLINE_MS, or `owner` was cancelled.
   * `chars`: the prompt's characters, where the caller has counted them already.
   */
  ask(
    ask: Omit<PromptAsk, "id" | "generation">,
    owner?: Cancellable,
    chars = promptChars(ask.view),
  ): Promise<PromptAnswer | undefined> {
    const id = ++this.seq;
    const full: PromptAsk = { ...ask, id, generation: this.generation };
    const o = { since: performance.now(), owner, chars };
    return new Promise((resolve) => {
      if (!this.post({ type: "ask", ask: full }, { ...o, resolve }, id)) {
        this.stats.onLoop++;
        resolve(undefined);
      }
    });
  }

  private load(model: string, root: string | undefined): void {
    if (this.loading.has(model) || this.loaded.has(model)) return;
    this.loading.add(model);
    const id = ++this.seq;
    const m: ThreadMessage = { type: "load", id, generation: this.generation, model, root };
    if (!this.post(m, { resolve: () => undefined, model, since: performance.now() }, id))
      this.loading.delete(model);
  }

  /** Sends `m`, owing `o` for it: false where it could not be sent (nothing is then owed). */
  private post(m: ThreadMessage, o: Owed, id: number): boolean {
    if (this.closed) return false;
    if (!this.worker) {
      try {
        this.worker = this.start();
      } catch (err) {
        this.failed(err as Error);
        return false;
      }
    }
    try {
      this.worker.postMessage(m);
    } catch {
      // this ask cannot be sent (its view does not clone): the loop works it out, the worker is fine
      if (this.owed.size === 0) this.rest(this.worker);
      return false;
    }
    this.owed.set(id, o);
    this.inWorker++;
    // referenced while it owes an answer, so a process waiting only for it stays alive
    this.worker.ref();
    clearTimeout(this.idle);
    this.sweep ??= setInterval(() => this.sweepOwed(), SWEEP_MS);
    this.sweep.unref();
    return true;
  }

  /** asks whose request was cancelled, or that are overdue, go back to the loop */
  private sweepOwed(): void {
    const now = performance.now();
    for (const [id, o] of this.owed) {
      if (o.model !== undefined) continue;
      if (o.owner?.cancelled || now - o.since > ASK_DEADLINE_MS) {
        this.owed.delete(id);
        this.stats.onLoop++;
        o.resolve(undefined);
      }
    }
    if (this.owed.size === 0 && this.worker) this.rest(this.worker);
  }

  private start(): Worker {
    const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
    // ids only grow, so a new worker's counter starting at 0 owes nothing it has not been sent
    this.finished = new Int32Array(new SharedArrayBuffer(4));
    const w = new Worker(new URL(`./prompt-thread-worker${ext}`, import.meta.url), {
      workerData: { dirs: this.dirs, finished: this.finished } satisfies ThreadData,
    });
    w.on("message", (a: PromptAnswer) => this.answered(w, a));
    w.on("error", (err) => this.worker === w && this.failed(err));
    w.on(
      "exit",
      (code) => this.worker === w && this.failed(new PeerError(`prompt thread exited with ${code}`)),
    );
    log.info({}, "prompt thread started: long prompts are tokenized and hashed off the event loop");
    return w;
  }

  private answered(w: Worker, a: PromptAnswer): void {
    if (this.worker !== w) return;
    this.inWorker--;
    const o = this.owed.get(a.id);
    if (!o) return;
    this.owed.delete(a.id);
    const current = a.generation === this.generation;
    if (o.model !== undefined) {
      if (current) this.loading.delete(o.model);
      if (current && a.tokens !== null) this.loaded.add(o.model);
      else if (current) {
        this.unusable.add(o.model);
        log.warn(
          { model: o.model },
          "the prompt thread cannot load the model's tokenizer; its prompts stay on the event loop",
        );
      }
    } else if (current && a.error === undefined && !o.owner?.cancelled) {
      this.paced(o, a.workMs);
      this.stats.answered++;
      o.resolve(a);
    } else {
      this.stats.onLoop++;
      o.resolve(undefined);
    }
    if (this.owed.size === 0) this.rest(w);
  }

  /** Nothing owed: unref'd, and stopped after IDLE_MS unless work comes. */
  private rest(w: Worker): void {
    w.unref();
    clearInterval(this.sweep);
    this.sweep = undefined;
    clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      if (this.owed.size > 0 || this.worker !== w) return;
      this.drop();
      void w.terminate();
    }, IDLE_MS);
    this.idle.unref();
  }

  private failed(err: Error): void {
    this.failures++;
    log.warn(
      { err: err.message, failures: this.failures },
      this.failures >= MAX_FAILURES
        ? "prompt thread failed; long prompts are worked out on the event loop from now on"
        : "prompt thread failed; it is started again on demand",
    );
    const w = this.worker;
    this.drop();
    void w?.terminate();
  }

  /** the worker forgotten: whatever it owed is worked out on the loop */
  private drop(): void {
    this.worker = undefined;
    this.inWorker = 0;
    this.loaded.clear();
    this.loading.clear();
    this.longOnLoop = 0;
    clearInterval(this.sweep);
    this.sweep = undefined;
    const owed = [...this.owed.values()];
    this.owed.clear();
    for (const o of owed) o.resolve(undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idle);
    const w = this.worker;
    this.drop();
    await w?.terminate();
  }
}
