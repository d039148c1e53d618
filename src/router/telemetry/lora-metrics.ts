// The routing share of LoRA adapters, for `switchyard status` and dashboards: requests routed per
// adapter, as a bounded family (the TOP_ADAPTERS adapters with the most requests by name, every other
// as adapter="other", so a registry of thousands never becomes thousands of series), and the adapters
// the router holds loaded per engine. Read from the adapter loader's books at scrape time.
import { Gauge, type Registry } from "prom-client";

/** adapters named in switchyard_lora_adapter_requests; the rest are summed as adapter="other" */
export const TOP_ADAPTERS = 20;
/** the label value of every adapter beyond the top ones */
export const OTHER_ADAPTERS = "other";

/** what the loader keeps that these metrics read (src/router/engines/adapters.ts, AdapterLoader) */
export interface AdapterTrafficSource {
  /** requests routed per adapter since the router started */
  readonly requests: ReadonlyMap<string, number>;
  /** adapters loaded per engine URL, as the router's books say */
  loadedPerEngine(): Iterable<[engine: string, loaded: number]>;
}

/**
 * The `n` adapters with the most requests (ties by name, so the set is stable), then
 * `{adapter: "other"}` with the rest's sum when there is any rest
 */
export function topAdapters(
  requests: ReadonlyMap<string, number>,
  n = TOP_ADAPTERS,
): { adapter: string; requests: number }[] {
  // a bounded selection: at most n kept, in order, each new one placed by insertion (n is small)
  const top: { adapter: string; requests: number }[] = [];
  let total = 0;
  const before = (a: { adapter: string; requests: number }, b: { adapter: string; requests: number }) =>
    a.requests > b.requests || (a.requests === b.requests && a.adapter < b.adapter);
  for (const [adapter, count] of requests) {
    total += count;
    if (n <= 0) continue;
    const x = { adapter, requests: count };
    if (top.length === n) {
      if (!before(x, top[n - 1]!)) continue;
      top.pop();
    }
    let i = top.length;
    top.push(x);
    while (i > 0 && before(x, top[i - 1]!)) {
      top[i] = top[i - 1]!;
      i--;
    }
    top[i] = x;
  }
  const named = top.reduce((a, x) => a + x.requests, 0);
  if (total > named) top.push({ adapter: OTHER_ADAPTERS, requests: total - named });
  return top;
}

/** Registers the adapter families on the router's registry; their values are read at each scrape. */
export function watchAdapterTraffic(registry: Registry, source: AdapterTrafficSource): void {
  new Gauge({
    name: "switchyard_lora_adapter_requests",
    help: `Requests routed per LoRA adapter since the router started: the ${TOP_ADAPTERS} adapters with the most by name, the rest as adapter="${OTHER_ADAPTERS}" (an adapter may enter or leave the named set; the sum over adapters only grows)`,
    labelNames: ["adapter"],
    registers: [registry],
    collect() {
      this.reset();
      for (const x of topAdapters(source.requests)) this.set({ adapter: x.adapter }, x.requests);
    },
  });
  new Gauge({
    name: "switchyard_lora_adapters_loaded",
    help: "LoRA adapters loaded on each engine, as the router's books say (its /v1/models and the router's own loads)",
    labelNames: ["engine"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [engine, loaded] of source.loadedPerEngine()) this.set({ engine }, loaded);
    },
  });
}
