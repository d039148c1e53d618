// One simulation the planner asks for, as a plain value that can cross to a worker thread: the
// scenario (a candidate fleet filled in), the offload option, the run's size, and the SLO bounds that
// end it early once it is certain to miss them. The same function runs it in a worker or in-process.
//
// A plan replays one workload dozens of times (fleet sizes, offload options, KV sizes), so each
// thread keeps the workload's sessions and their token ids from the first run: a run then spends its
// time in the engines, not in generating and splitting prompt text again (that was half of it).
import { performance } from "node:perf_hooks";
import { fleetOptionsFor, type OffloadMode } from "../fleet/build.js";
import { simulateFleet } from "../fleet/fleet.js";
import { fleetReport, type FleetReport } from "../fleet/report.js";
import { resolveScenario } from "../fleet/scenario.js";
import { loadProfilesFile } from "../models/index.js";
import { VirtualTokenizer } from "../fleet/tokens.js";
import type { Session, Workload } from "../workload/types.js";
import { missCounter, type SloTargets } from "./slo.js";

export interface RunJob {
  /** the scenario as parsed YAML, with the candidate fleet filled in */
  raw: unknown;
  mode: OffloadMode;
  kvScale?: number;
  requests?: number;
  /** send only the first this many requests of the workload (a shorter run of the same load) */
  maxRequests?: number;
  /** end the run once a p90 is certain to miss these bounds */
  stopAt?: SloTargets | null;
  /** a profiles YAML (extra GPUs and models) the scenario names, loaded once per thread */
  profiles?: string;
}

const loadedProfiles = new Set<string>();

export interface RunResult {
  report: FleetReport;
  stoppedEarly: boolean;
}

/** workloads (and their tokenizers) a thread keeps; a plan uses one or two */
const MAX_WORKLOADS = 2;
const workloads = new Map<
  string,
  { sessions: Session[]; source: Iterator<Session> | null; tok: VirtualTokenizer }
>();

/** the workload with its sessions kept as they are generated, replayed by later runs */
function replayable(key: string, w: Workload): { workload: Workload; tok: VirtualTokenizer } {
  let memo = workloads.get(key);
  if (!memo) {
    if (workloads.size >= MAX_WORKLOADS) workloads.delete(workloads.keys().next().value!);
    memo = { sessions: [], source: null, tok: new VirtualTokenizer(Number.MAX_SAFE_INTEGER) };
    workloads.set(key, memo);
  }
  const m = memo;
  const sessions: Iterable<Session> = {
    *[Symbol.iterator]() {
      for (let i = 0; ; i++) {
        if (i < m.sessions.length) {
          yield m.sessions[i]!;
          continue;
        }
        m.source ??= w.sessions[Symbol.iterator]();
        const n = m.source.next();
        if (n.done) return;
        m.sessions.push(n.value);
        yield n.value;
      }
    },
  };
  return { workload: { ...w, sessions }, tok: m.tok };
}

export function runJob(job: RunJob): RunResult {
  if (job.profiles !== undefined && !loadedProfiles.has(job.profiles)) {
    loadProfilesFile(job.profiles);
    loadedProfiles.add(job.profiles);
  }
  const r = resolveScenario(job.raw);
  const o = fleetOptionsFor(r, job.mode, {
    ...(job.kvScale !== undefined ? { kvScale: job.kvScale } : {}),
    ...(job.requests !== undefined ? { requests: job.requests } : {}),
    recordItl: false,
  });
  const s = r.scenario;
  // what the generated sessions depend on: the workload, the generator, its seed and the run's size
  const key = JSON.stringify([s.workload, s.simulation.generator, s.simulation.seed, o.maxRequests]);
  const { workload, tok } = replayable(key, o.workload);
  o.workload = workload;
  if (job.maxRequests !== undefined) o.maxRequests = Math.min(o.maxRequests, job.maxRequests);
  o.hooks = { tokenizer: tok };
  if (job.stopAt) o.hooks.onRecord = missCounter(job.stopAt, o.maxRequests);
  const t0 = performance.now();
  const res = simulateFleet(o);
  return { report: fleetReport(o, res, (performance.now() - t0) / 1000), stoppedEarly: res.stoppedEarly };
}
