// Per-engine router counters summed over a router group: this process's own requests plus what the
// other workers of its process group, and other replicas, report. The data plane keeps counting on the
// engine's view (`registry.takeSlot`: view.inFlight++), and this adds the others' counts into the same
// fields, so every policy reads the group's load and needs no change. The others' part of the requests
// awaiting a first token, and the prefill those still need (each process's prefill ledger, which only
// it can trim), go into the view's peer fields: the time model prices an engine's queue by them.
//
// Others report absolute counts per engine URL, never deltas: a report is idempotent, a late one is
// simply replaced, and a source that dies is dropped whole (`drop`) without leaving a drift behind.
// A process's own count is then its view minus what others added.
import type { EngineView, Policy } from "../../routing/index.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { EngineRecord } from "../engines/engine-record.js";
import type { LoadCounts } from "./protocol.js";

/**
 * What each source reports per engine, in the order LoadCounts carries it: requests in flight, of
 * those the ones awaiting their first token (least-load and the time model rank by them), and the
 * prefill tokens those still need by the source's own prefill ledger (0 for a policy that keeps none).
 * The first two are counts of requests (COUNTED): a claim is checked on them (ledger.ts).
 */
export const SHARED_FIELDS = ["inFlight", "awaitingFirstToken", "prefillTokens"] as const;
type Field = (typeof SHARED_FIELDS)[number];
const N = SHARED_FIELDS.length;
/** the fields that count requests, first in SHARED_FIELDS */
export const COUNTED = 2;
const PREFILL = SHARED_FIELDS.indexOf("prefillTokens");

/** awaitingFirstToken is absent from a view until a request is sent */
const read = (v: EngineView, f: "inFlight" | "awaitingFirstToken"): number => v[f] ?? 0;

/** Adds `d` of the others' field `i` into the view the policies read. */
function addTo(v: EngineView, i: number, d: number): void {
  if (i === 0) v.inFlight += d;
  else if (i === 1) {
    v.awaitingFirstToken = read(v, "awaitingFirstToken") + d;
    v.peerAwaitingFirstToken = (v.peerAwaitingFirstToken ?? 0) + d;
  } else v.peerPrefillTokens = (v.peerPrefillTokens ?? 0) + d;
}

/** What a process reports as its own queued prefill on an engine: its current policy's ledger. */
export function queuedPrefillOf(policy: () => Policy): (e: EngineRecord) => number {
  return (e) => policy().queuedPrefillTokens?.(e.view) ?? 0;
}

/** Engines one source may report (a peer's report is cut here); the registry's own are far fewer. */
const MAX_ENGINES_PER_SOURCE = 4096;

export class SharedLoad {
  /** url → source → that source's counts */
  private readonly bySource = new Map<string, Map<string, number[]>>();
  /** url → sum over sources, what was added into the engine's view */
  private readonly sums = new Map<string, number[]>();
  /** what this process last reported of itself, per url */
  private readonly reported = new Map<string, number[]>();
  /** slots taken on a pick the primary has not confirmed yet (claims.ts): not reported */
  private readonly tentative = new Map<string, number>();

  constructor(
    private readonly registry: EngineRegistry,
    /** this process's own queued prefill on the engine (its policy's ledger); none: 0 */
    private readonly ownPrefill: (e: EngineRecord) => number = () => 0,
  ) {
    // a new record (new engine, or a new pool) starts from the others' counts
    registry.on("added", (e) => {
      const s = this.sums.get(e.url);
      if (s) for (let i = 0; i < N; i++) addTo(e.view, i, s[i]!);
    });
  }

  /** This process's own count of `field` on `e` (the view holds the group's). */
  own(e: EngineRecord, field: Field = "inFlight"): number {
    const i = SHARED_FIELDS.indexOf(field);
    // a whole number of tokens: a peer takes nothing else (setOne)
    if (i === PREFILL) return Math.round(this.ownPrefill(e));
    const s = this.sums.get(e.url);
    return read(e.view, field as "inFlight" | "awaitingFirstToken") - (s ? s[i]! : 0);
  }

  /** What this process reports of its own: unconfirmed picks left out of the counts. */
  private reportable(e: EngineRecord, field: Field): number {
    // a held pick counts in both: sent (in flight) and not answered yet; its prefill is in the ledger
    // from the decision on (the policy learned it), and the next report after its answer restates it
    if (field === "prefillTokens") return this.own(e, field);
    return this.own(e, field) - (this.tentative.get(e.url) ?? 0);
  }

  /** A pick awaits the primary's word: counted here, not reported. */
  holdTentative(url: string, by: 1 | -1): void {
    const n = (this.tentative.get(url) ?? 0) + by;
    if (n === 0) this.tentative.delete(url);
    else this.tentative.set(url, n);
  }

  /** The primary now counts `counts` as this process's own for `url` (a confirmed pick). */
  markReported(url: string, counts: number[]): void {
    if (counts.some((v) => v !== 0)) this.reported.set(url, counts);
    else this.reported.delete(url);
  }

  /** This process's reportable counts for `e`, and marks them reported (a claim carries them). */
  report(e: EngineRecord): LoadCounts {
    const row: LoadCounts = [e.url];
    for (const f of SHARED_FIELDS) row.push(this.reportable(e, f));
    this.markReported(e.url, row.slice(1) as number[]);
    return row;
  }

  /** Counts of every source but `except` for `url`, per field (a primary checking a worker's claim). */
  othersExcept(except: string, url: string): LoadCounts {
    const row: LoadCounts = [url, ...new Array<number>(N).fill(0)];
    const per = this.bySource.get(url);
    if (per)
      for (const [source, c] of per)
        if (source !== except) for (let i = 0; i < N; i++) row[i + 1] = (row[i + 1] as number) + c[i]!;
    return row;
  }

  /** Others' counts on the engine at `url`, per field (what a worker's claim says it read). */
  othersRow(url: string): LoadCounts {
    const s = this.sums.get(url);
    return s ? [url, ...s] : [url, ...new Array<number>(N).fill(0)];
  }

  /** Others' part of `field` on the engine at `url`. */
  others(url: string, field: Field = "inFlight"): number {
    const s = this.sums.get(url);
    return s ? s[SHARED_FIELDS.indexOf(field)]! : 0;
  }

  /** A source's absolute counts for the engines it lists (others it listed before keep their value). */
  set(source: string, load: readonly LoadCounts[]): void {
    let n = 0;
    for (const row of load) {
      if (++n > MAX_ENGINES_PER_SOURCE) break;
      this.setOne(source, row[0], row);
    }
  }

  /**
   * A source's whole table (a replica's report lists only engines with a count): engines it listed
   * before and leaves out now are at 0. Returns the rows applied, those zeros included, to pass on.
   */
  replace(source: string, load: readonly LoadCounts[]): LoadCounts[] {
    const listed = new Set(load.map((r) => r[0]));
    const rows: LoadCounts[] = [];
    for (const [url, per] of this.bySource)
      if (per.has(source) && !listed.has(url)) rows.push([url, ...new Array<number>(N).fill(0)]);
    // the zeros first: `set` cuts a table at MAX_ENGINES_PER_SOURCE
    rows.push(...load);
    this.set(source, rows);
    return rows;
  }

  private setOne(source: string, url: string, row: readonly unknown[]): void {
    let per = this.bySource.get(url);
    const prev = per?.get(source);
    const next: number[] = new Array(N);
    let zero = true;
    for (let i = 0; i < N; i++) {
      const v = row[i + 1];
      // a count is a non-negative integer; anything else from a peer counts as 0
      next[i] = typeof v === "number" && Number.isInteger(v) && v > 0 ? v : 0;
      if (next[i] !== 0) zero = false;
    }
    let sum = this.sums.get(url);
    if (!sum) {
      if (zero) return;
      sum = new Array<number>(N).fill(0);
      this.sums.set(url, sum);
    }
    const e = this.registry.engines.get(url);
    for (let i = 0; i < N; i++) {
      const d = next[i]! - (prev ? prev[i]! : 0);
      if (d === 0) continue;
      sum[i] = sum[i]! + d;
      if (e) addTo(e.view, i, d);
    }
    if (zero) {
      per?.delete(source);
      if (per && per.size === 0) {
        this.bySource.delete(url);
        this.sums.delete(url);
      }
    } else {
      if (!per) this.bySource.set(url, (per = new Map()));
      per.set(source, next);
    }
    // the others' last requests on a removed engine have ended: it may leave now
    if (e && zero) this.registry.maybeFinishDrain(e);
  }

  /** A source is gone (a worker exited, a replica fell silent): its counts stop counting. */
  drop(source: string): void {
    for (const [url, per] of [...this.bySource]) if (per.has(source)) this.setOne(source, url, [url]);
  }

  /**
   * Counts of this process and the sources `mine` accepts (a primary: its workers), per engine with
   * any: what this replica reports to other replicas.
   */
  group(mine: (source: string) => boolean): LoadCounts[] {
    const out = new Map<string, number[]>();
    for (const e of this.registry.engines.values()) {
      const row = SHARED_FIELDS.map((f) => this.reportable(e, f));
      if (row.some((v) => v !== 0)) out.set(e.url, row);
    }
    for (const [url, per] of this.bySource) {
      for (const [source, counts] of per) {
        if (!mine(source)) continue;
        let row = out.get(url);
        if (!row) out.set(url, (row = new Array<number>(N).fill(0)));
        for (let i = 0; i < N; i++) row[i] = row[i]! + counts[i]!;
      }
    }
    return [...out].map(([url, row]) => [url, ...row] as LoadCounts);
  }

  /** One source's counts as it last reported them (a worker that starts learns the others'). */
  table(source: string): LoadCounts[] {
    const out: LoadCounts[] = [];
    for (const [url, per] of this.bySource) {
      const c = per.get(source);
      if (c) out.push([url, ...c]);
    }
    return out;
  }

  /** Sources with counts at the moment (for /engines and tests). */
  sources(): string[] {
    const out = new Set<string>();
    for (const per of this.bySource.values()) for (const s of per.keys()) out.add(s);
    return [...out];
  }

  /**
   * This process's own counts that changed since the last call (a removed engine reports 0 once).
   * With `all`, every engine with a non-zero own count (a fresh peer must learn them).
   */
  changes(all = false): LoadCounts[] {
    const out: LoadCounts[] = [];
    const seen = new Set<string>();
    for (const e of this.registry.engines.values()) {
      seen.add(e.url);
      const row: LoadCounts = [e.url];
      let nonZero = false;
      const last = this.reported.get(e.url);
      let changed = last === undefined;
      for (let i = 0; i < N; i++) {
        const v = this.reportable(e, SHARED_FIELDS[i]!);
        row.push(v);
        if (v !== 0) nonZero = true;
        if (last && last[i] !== v) changed = true;
      }
      if (!nonZero && last === undefined) continue;
      if (changed || (all && nonZero)) out.push(row);
      if (nonZero) this.reported.set(e.url, row.slice(1) as number[]);
      else this.reported.delete(e.url);
    }
    for (const url of [...this.reported.keys()]) {
      if (seen.has(url)) continue;
      this.reported.delete(url);
      out.push([url, ...new Array<number>(N).fill(0)]);
    }
    return out;
  }
}
