// The disaggregated search: for each GPU, the prefill and decode TPs worth trying, then the fewest
// prefill and decode engines (xPyD) whose simulated p90s meet the SLO, every point a fleet simulation
// of the router's P/D mode (src/fleet/pd.ts) with the scenario's workload. The two pools are sized
// one after the other, as each bound depends mostly on one of them:
// 1. decode engines against the TPOT bound alone, with a prefill pool twice its lower bound (so that
//    prefill is not what limits the run);
// 2. prefill engines against the whole SLO at that decode count (TTFT includes the transfer and the
//    decode engine's first step).
// What keeps it quick, as in the aggregated search (search.ts): TPs whose one-request floor already
// misses its bound are dropped (a role's TP beyond the two smallest that pass is dominated: more GPUs
// per engine for the same work), per-role lower bounds from the engine's step-time model start each
// count near its answer, combinations run cheapest lower bound first, and one whose lower bound costs
// more than the cheapest fleet found so far (aggregated ones included) is dropped before it runs.
import type { OffloadMode } from "../fleet/build.js";
import { kvCapacity } from "../engine/index.js";
import { engineConfigFor } from "../fleet/build.js";
import { PD_TRANSFER_BPS_PER_RANK } from "../fleet/pd.js";
import { withFleet, type FleetChoice, type PdLayout, type Shape } from "./input.js";
import { costOf, type PriceTable } from "./prices.js";
import {
  busyPerRequest,
  minEngines,
  singleRequestFloors,
  type EngineSearch,
  type Evaluated,
  type Evaluator,
  type Found,
} from "./search.js";
import { secs } from "./slo.js";

/** TPs per role tried on each GPU: the smallest that pass their one-request floor */
export const PD_TPS_PER_ROLE = 2;

export interface PdOutcome {
  gpu: string;
  prefill_tensor_parallel_size: number;
  decode_tensor_parallel_size: number;
  prefill_engines: number | null;
  decode_engines: number | null;
  cost_usd_per_hour: number | null;
  note: string;
}

export interface PdSearchOptions {
  prices: PriceTable;
  budget: number | null;
  /** the cheapest fleet found so far (the aggregated search's), USD/h; Infinity: none */
  cap: number;
  maxEngines: number;
  mode: OffloadMode;
  /** how a cost of `prices` reads in notes */
  money: (x: number) => string;
}

interface Combo {
  gpu: string;
  prefillTp: number;
  decodeTp: number;
  maxModelLen: number | undefined;
  pLo: number;
  dLo: number;
  price: number;
  lb: number;
}

export const pdFleet = (c: Combo | Shape, pd: PdLayout): FleetChoice => ({
  gpu: c.gpu,
  tp: pd.decodeTp,
  engines: pd.prefill + pd.decode,
  ...(c.maxModelLen !== undefined ? { maxModelLen: c.maxModelLen } : {}),
  pd,
});

/** the combinations to try per GPU, cheapest lower bound first, and the GPUs with none */
function combos(
  ev: Evaluator,
  shapes: readonly Shape[],
  o: PdSearchOptions,
): { todo: Combo[]; out: PdOutcome[] } {
  const targets = ev.targets!;
  const qps = ev.base.scenario.workload.qps;
  const byGpu = new Map<string, Shape[]>();
  for (const s of shapes) byGpu.set(s.gpu, [...(byGpu.get(s.gpu) ?? []), s]);
  const todo: Combo[] = [];
  const out: PdOutcome[] = [];
  const bw = ev.base.scenario.fleet.disaggregated?.kv_transfer_gb_s_per_rank;
  const perRank = bw !== undefined ? bw * 1e9 : PD_TRANSFER_BPS_PER_RANK;
  for (const [gpu, list] of byGpu) {
    const price = o.prices[gpu];
    const none = (note: string) =>
      out.push({
        gpu,
        prefill_tensor_parallel_size: 0,
        decode_tensor_parallel_size: 0,
        prefill_engines: null,
        decode_engines: null,
        cost_usd_per_hour: null,
        note,
      });
    if (price === undefined) {
      none("no price for this GPU");
      continue;
    }
    const sorted = [...list].sort((a, b) => a.tp - b.tp);
    const info = sorted.map((s) => {
      const r = withFleet(ev.base, { ...s, engines: 1 });
      const floor = singleRequestFloors(r);
      const cfg = engineConfigFor(r, "none");
      const transferMs = ((ev.base.promptP90 * kvCapacity(cfg).kvBytesPerToken) / perRank) * 1000;
      return { s, floor, transferMs, busy: busyPerRequest(r) };
    });
    const pre = info.filter((x) => x.floor.ttftMs + x.transferMs <= targets.ttft).slice(0, PD_TPS_PER_ROLE);
    const dec = info.filter((x) => x.floor.tpotMs <= targets.tpot).slice(0, PD_TPS_PER_ROLE);
    if (pre.length === 0 || dec.length === 0) {
      const x = info[info.length - 1];
      none(
        pre.length === 0
          ? `no prefill TP meets TTFT with one request alone (${x ? secs(x.floor.ttftMs) : "—"} > ${secs(targets.ttft)})`
          : `no decode TP meets TPOT with one request alone (${x ? secs(x.floor.tpotMs) : "—"} > ${secs(targets.tpot)})`,
      );
      continue;
    }
    for (const p of pre)
      for (const d of dec) {
        const pLo = qps === undefined ? 1 : Math.max(1, Math.ceil(qps * p.busy.prefill));
        const dLo = qps === undefined ? 1 : Math.max(1, Math.ceil(qps * d.busy.decode));
        const lens = [p.s.maxModelLen, d.s.maxModelLen].filter((x): x is number => x !== undefined);
        todo.push({
          gpu,
          prefillTp: p.s.tp,
          decodeTp: d.s.tp,
          maxModelLen: lens.length ? Math.min(...lens) : undefined,
          pLo,
          dLo,
          price,
          lb: (pLo * p.s.tp + dLo * d.s.tp) * price,
        });
      }
  }
  todo.sort((a, b) => a.lb - b.lb || a.prefillTp + a.decodeTp - (b.prefillTp + b.decodeTp));
  return { todo, out };
}

/**
 * The cheapest disaggregated fleet over `shapes`' GPUs and TPs that meets the SLO, and what became of
 * each combination. The cheapest combination by lower bound always runs, whatever the cap, so that
 * the plan's front holds disaggregated layouts beside the aggregated ones.
 */
export async function searchPd(
  ev: Evaluator,
  shapes: readonly Shape[],
  o: PdSearchOptions,
): Promise<{ found: Found | null; outcomes: PdOutcome[] }> {
  const targets = ev.targets!;
  const { todo, out } = combos(ev, shapes, o);
  const found: Found[] = [];
  let cap = Math.min(o.cap, o.budget ?? Infinity);
  const waveSize = Math.min(ev.pool.size, Math.max(1, todo.length));
  const width = Math.max(1, Math.floor(ev.pool.size / waveSize));
  const tpotOnly = { ttft: Infinity, tpot: targets.tpot, e2e: null };
  for (let w = 0; w < todo.length; w += waveSize) {
    const wave = todo.slice(w, w + waveSize);
    const capNow = cap;
    const results = await Promise.all(
      wave.map(async (c, i) => {
        const forced = w === 0 && i === 0;
        const limit = forced ? Math.max(capNow, c.lb * 2) : capNow;
        const outcome = (
          p: number | null,
          d: number | null,
          cost: number | null,
          note: string,
        ): PdOutcome => ({
          gpu: c.gpu,
          prefill_tensor_parallel_size: c.prefillTp,
          decode_tensor_parallel_size: c.decodeTp,
          prefill_engines: p,
          decode_engines: d,
          cost_usd_per_hour: cost,
          note,
        });
        if (c.lb > limit)
          return {
            o: outcome(
              null,
              null,
              null,
              `needs at least ${c.pLo}P + ${c.dLo}D (${o.money(c.lb)}) to keep up with the load: ${limit < Infinity ? `cannot beat the ${o.money(limit)} found` : "over the budget"}`,
            ),
            f: null,
          };
        const layout = (p: number, d: number): FleetChoice =>
          pdFleet(c, { prefill: p, decode: d, prefillTp: c.prefillTp, decodeTp: c.decodeTp });
        const countCap = (fixedGpus: number, tp: number) =>
          Math.min(o.maxEngines, Math.floor((limit - fixedGpus * c.price) / (tp * c.price) + 1e-9));
        const pBig = Math.max(2, 2 * c.pLo);
        const sD: EngineSearch = await minEngines(
          (d) => ev.run(layout(pBig, d), o.mode, { stop: true, targets: tpotOnly }),
          c.dLo,
          () => countCap(c.pLo * c.prefillTp, c.decodeTp),
          width,
        );
        if (sD.engines === null) return { o: outcome(null, null, null, `decode pool: ${sD.note}`), f: null };
        const D = sD.engines;
        const sP = await minEngines(
          (p) => ev.run(layout(p, D), o.mode, { stop: true }),
          c.pLo,
          () => countCap(D * c.decodeTp, c.prefillTp),
          width,
        );
        if (sP.engines === null || !sP.at)
          return {
            o: outcome(null, D, null, `prefill pool at ${D} decode engine${D === 1 ? "" : "s"}: ${sP.note}`),
            f: null,
          };
        const fleet = layout(sP.engines, D);
        const cost = costOf(o.prices, fleet)!;
        const f: Found = { fleet, cost, at: sP.at as Evaluated, below: sP.below };
        return { o: outcome(sP.engines, D, cost, ""), f };
      }),
    );
    for (const r of results) {
      out.push(r.o);
      if (r.f) found.push(r.f);
    }
    found.sort(
      (x, y) =>
        x.cost - y.cost || x.at.predicted.ttft_p90_ms - y.at.predicted.ttft_p90_ms || label0(x) - label0(y),
    );
    if (found[0]) cap = Math.min(cap, found[0].cost);
  }
  return { found: found[0] ?? null, outcomes: out };
}

const label0 = (f: Found) => f.fleet.pd!.prefillTp * 10 + f.fleet.pd!.decodeTp;
