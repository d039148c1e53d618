// Runs the planner's simulations on worker threads (one per core by default) and remembers every
// result: a search asks for the same fleet more than once (the offload choice, the check one engine
// below), and a run is deterministic, so asking again costs nothing. With one worker it runs
// in-process. Progress goes to stderr, only on a TTY.
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { runJob, type RunJob, type RunResult } from "./jobs.js";
import { PeerError } from "../errors/index.js";

interface Pending {
  id: number;
  job: RunJob;
  label: string;
  resolve: (r: RunResult) => void;
  reject: (e: Error) => void;
}

/** a status line rewritten in place on a TTY; silent elsewhere */
export class Progress {
  private phase = "";
  private last = 0;
  private shown = false;
  private readonly t0 = performance.now();
  constructor(
    private readonly out: NodeJS.WriteStream | null,
    private readonly counts: () => { done: number; running: number; queued: number },
  ) {}

  static forStderr(counts: () => { done: number; running: number; queued: number }): Progress {
    return new Progress(process.stderr.isTTY ? process.stderr : null, counts);
  }

  set(phase: string): void {
    this.phase = phase;
    this.render(true);
  }

  render(force = false): void {
    if (!this.out) return;
    const now = performance.now();
    if (!force && now - this.last < 200) return;
    this.last = now;
    const c = this.counts();
    const s = ((now - this.t0) / 1000).toFixed(0);
    const line = `plan: ${this.phase} · ${c.done} runs done, ${c.running} running, ${c.queued} queued · ${s} s`;
    this.out.write(`\r\x1b[K${line.slice(0, (this.out.columns || 120) - 1)}`);
    this.shown = true;
  }

  clear(): void {
    if (this.out && this.shown) this.out.write("\r\x1b[K");
    this.shown = false;
  }
}

export class SimPool {
  /** by the whole job */
  private readonly cache = new Map<string, Promise<RunResult>>();
  /** by the job without its early-stop bound: a run that went to the end answers any bound */
  private readonly complete = new Map<string, Promise<RunResult>>();
  /** runs with a bound, in flight, by that same key */
  private readonly bounded = new Map<string, Promise<RunResult>>();
  private readonly queue: Pending[] = [];
  private readonly idle: Worker[] = [];
  private readonly busy = new Map<Worker, Pending>();
  private readonly workers: Worker[] = [];
  private nextId = 0;
  private done = 0;
  private inProcessRunning = 0;
  readonly size: number;
  readonly progress: Progress;

  /** `workers`: threads to use (default: one per core); 1 runs every simulation in this thread */
  constructor(workers = availableParallelism(), progress?: Progress) {
    this.size = Math.max(1, Math.floor(workers));
    this.progress = progress ?? Progress.forStderr(() => this.counts());
  }

  counts(): { done: number; running: number; queued: number } {
    return { done: this.done, running: this.busy.size + this.inProcessRunning, queued: this.queue.length };
  }

  /** simulations actually run (answers from the cache not counted) */
  get runs(): number {
    return this.done;
  }

  run(job: RunJob, label = ""): Promise<RunResult> {
    const key = JSON.stringify(job);
    const base = job.stopAt ? JSON.stringify({ ...job, stopAt: undefined }) : key;
    const whole = this.complete.get(base);
    if (whole) return whole;
    const same = this.cache.get(key);
    if (same) return same;
    const racing = job.stopAt ? undefined : this.bounded.get(base);
    // the same fleet is running with a bound: its result serves unless it stopped early
    if (racing) return racing.then((res) => (res.stoppedEarly ? this.start(job, key, base, label) : res));
    return this.start(job, key, base, label);
  }

  private start(job: RunJob, key: string, base: string, label: string): Promise<RunResult> {
    const p = new Promise<RunResult>((resolve, reject) =>
      this.queue.push({ id: this.nextId++, job, label, resolve, reject }),
    );
    this.cache.set(key, p);
    if (job.stopAt) this.bounded.set(base, p);
    p.then(
      (res) => {
        if (!res.stoppedEarly) this.complete.set(base, p);
        if (this.bounded.get(base) === p) this.bounded.delete(base);
      },
      () => {},
    );
    this.pump();
    return p;
  }

  private pump(): void {
    if (this.size === 1) {
      // in-process: one at a time, off the caller's stack so that callers can queue several first
      if (this.inProcessRunning > 0 || this.queue.length === 0) return;
      const task = this.queue.shift()!;
      this.inProcessRunning++;
      setImmediate(() => {
        try {
          task.resolve(runJob(task.job));
        } catch (err) {
          task.reject(err as Error);
        } finally {
          this.inProcessRunning--;
          this.done++;
          this.progress.render();
          this.pump();
        }
      });
      return;
    }
    while (this.queue.length > 0) {
      let w = this.idle.pop();
      if (!w && this.workers.length < this.size) w = this.spawn();
      if (!w) return;
      const task = this.queue.shift()!;
      this.busy.set(w, task);
      w.postMessage({ id: task.id, job: task.job });
    }
  }

  private spawn(): Worker {
    const w = new Worker(new URL("./worker.js", import.meta.url));
    w.on("message", (msg: { id: number; result?: RunResult; error?: string }) => {
      const task = this.busy.get(w);
      this.busy.delete(w);
      this.idle.push(w);
      this.done++;
      if (task) {
        if (msg.error !== undefined) task.reject(new PeerError(msg.error));
        else task.resolve(msg.result!);
      }
      this.progress.render();
      this.pump();
    });
    w.on("error", (err) => {
      const task = this.busy.get(w);
      this.busy.delete(w);
      const i = this.workers.indexOf(w);
      if (i >= 0) this.workers.splice(i, 1);
      task?.reject(err);
      this.pump();
    });
    this.workers.push(w);
    return w;
  }

  async close(): Promise<void> {
    this.progress.clear();
    const ws = this.workers.splice(0);
    this.idle.length = 0;
    await Promise.all(ws.map((w) => w.terminate()));
  }
}
