// Progress on stderr: a redrawn bar on a TTY, a plain line every few seconds otherwise (logs, CI).
import { performance } from "node:perf_hooks";

export interface ProgressSource {
  done: number;
  failed: number;
  inFlight: number;
}

export class Progress {
  private timer: NodeJS.Timeout | null = null;
  private readonly t0 = performance.now();
  private readonly tty: boolean;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly src: ProgressSource,
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly quiet = false,
  ) {
    this.tty = Boolean(out.isTTY);
  }

  start(): void {
    if (this.quiet) return;
    this.timer = setInterval(() => this.draw(false), this.tty ? 200 : 5000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (!this.quiet) this.draw(true);
  }

  line(): string {
    const s = (performance.now() - this.t0) / 1000;
    const { done, failed, inFlight } = this.src;
    const total = Number.isFinite(this.total) ? this.total : 0;
    const rate = s > 0 ? done / s : 0;
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const bar = total > 0 ? `[${"#".repeat(Math.round(frac * 24)).padEnd(24, ".")}] ` : "";
    const count = total > 0 ? `${done}/${total}` : `${done}`;
    return `${this.label} ${bar}${count} done, ${failed} failed, ${inFlight} in flight, ${rate.toFixed(1)} req/s, ${s.toFixed(1)} s`;
  }

  private draw(final: boolean): void {
    if (this.tty) this.out.write(`\r\x1b[2K${this.line()}${final ? "\n" : ""}`);
    else this.out.write(`${this.line()}\n`);
  }
}
