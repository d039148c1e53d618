// Metric families for the per-request series: children bound once per label set, so an update is one
// addition (prom-client hashes the label object on every inc/observe). They hold plain numbers and
// answer prom-client's `get()` at scrape; RouterMetrics (metrics.ts) registers them. Bounded: past
// MAX_SERIES label sets a family drops the least recently created.

/** Label sets one family keeps; past it the least recently created one is dropped (its series goes stale). */
const MAX_SERIES = 10_000;

interface PromValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/** A counter family whose children are bound once per label set and then cost one addition. */
export class CounterFamily<L extends string> {
  readonly type = "counter";
  readonly aggregator = "sum";
  private readonly children = new Map<string, { labels: Record<L, string>; value: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly L[],
  ) {}

  /** The child for these label values (in `labelNames` order); keep it and call `inc` on it. */
  child(...values: string[]): { value: number } {
    const key = values.join("\u0001");
    let c = this.children.get(key);
    if (!c) {
      if (this.children.size >= MAX_SERIES) this.children.delete(this.children.keys().next().value!);
      const labels = {} as Record<L, string>;
      this.labelNames.forEach((n, i) => (labels[n] = values[i] ?? ""));
      c = { labels, value: 0 };
      this.children.set(key, c);
    }
    return c;
  }

  inc(labels: Record<L, string>, by = 1): void {
    this.child(...this.labelNames.map((n) => labels[n])).value += by;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: PromValue[] } {
    const values: PromValue[] = [];
    for (const c of this.children.values()) values.push({ labels: c.labels, value: c.value });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.children.clear();
  }
}

/** One label set's histogram: bucket counts (non-cumulative; the last is +Inf), sum and count. */
export class HistogramChild {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    private readonly bounds: readonly number[],
    readonly labels: Record<string, string>,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

export class HistogramFamily {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly children = new Map<string, HistogramChild>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelName: string,
    readonly buckets: readonly number[],
  ) {}

  child(value: string): HistogramChild {
    let c = this.children.get(value);
    if (!c) {
      if (this.children.size >= MAX_SERIES) this.children.delete(this.children.keys().next().value!);
      c = new HistogramChild(this.buckets, { [this.labelName]: value });
      this.children.set(value, c);
    }
    return c;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: PromValue[] } {
    const values: PromValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const c of this.children.values()) {
      let acc = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        acc += c.counts[i]!;
        values.push({ labels: { ...c.labels, le: this.buckets[i]! }, value: acc, metricName: bucket });
      }
      values.push({ labels: { ...c.labels, le: "+Inf" }, value: c.count, metricName: bucket });
      values.push({ labels: c.labels, value: c.sum, metricName: `${this.name}_sum` });
      values.push({ labels: c.labels, value: c.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.children.clear();
  }
}
