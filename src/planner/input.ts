// What `plan` is asked: the scenario, with `fleet.gpu`, `fleet.engines` and
// `fleet.tensor_parallel_size` allowed to be left out (the planner searches them) when the scenario
// states an SLO. Parsed once here; every problem is one line that names the field. Also: the fleet
// shapes (GPU × TP) a model fits on, and the scenario with a candidate fleet filled in.
import { parse as parseYaml } from "yaml";
import { DERIVED_QUESTION_TOKENS, DERIVED_ROUNDS, engineConfigFor } from "../fleet/build.js";
import { resolveScenario, ScenarioError, type ResolvedScenario } from "../fleet/scenario.js";
import { kvCapacity } from "../engine/index.js";
import { GPUS, resolveGpu } from "../models/index.js";
import { InvalidConfigError } from "../errors/index.js";

/** the fleet fields the scenario leaves to the planner */
export interface OpenFields {
  gpu: boolean;
  engines: boolean;
  tensorParallelSize: boolean;
}

export const NO_OPEN_FIELDS: OpenFields = { gpu: false, engines: false, tensorParallelSize: false };

export interface PlanInput {
  /** the scenario; open fields hold placeholders (h100, 1 engine, TP 1) until a fleet is chosen */
  r: ResolvedScenario;
  open: OpenFields;
}

/** an invalid or infeasible scenario: exit 2 with this one line */
export class PlanInputError extends InvalidConfigError {}

/** tensor-parallel sizes the planner considers (one node) */
export const TP_SIZES = [1, 2, 4, 8] as const;

export interface Shape {
  gpu: string;
  tp: number;
  /** set when the model's full context does not fit and the planner sized it to the workload */
  maxModelLen?: number;
}

/** a disaggregated layout (xPyD): prefill and decode engines, each role with its own TP */
export interface PdLayout {
  prefill: number;
  decode: number;
  prefillTp: number;
  decodeTp: number;
}

/**
 * A fleet: `engines` of TP `tp`, or with `pd` a disaggregated one (then `engines` is prefill + decode
 * and `tp` the decode engines' TP).
 */
export interface FleetChoice extends Shape {
  engines: number;
  pd?: PdLayout;
}

/** the GPUs a fleet holds */
export function gpusOf(f: FleetChoice): number {
  return f.pd ? f.pd.prefill * f.pd.prefillTp + f.pd.decode * f.pd.decodeTp : f.engines * f.tp;
}

const PLACEHOLDER = { gpu: "h100", engines: 1, tensor_parallel_size: 1 };

export function parsePlanScenario(text: string): PlanInput {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new PlanInputError(`not valid YAML: ${(err as Error).message.split("\n")[0]}`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw))
    throw new PlanInputError("expected a mapping with workload, fleet and ops");
  const obj = raw as Record<string, unknown>;
  const fleet = obj.fleet;
  const f =
    fleet !== null && typeof fleet === "object" && !Array.isArray(fleet)
      ? (fleet as Record<string, unknown>)
      : null;
  const open: OpenFields = {
    gpu: f !== null && f.gpu === undefined,
    engines: f !== null && f.engines === undefined,
    // without an SLO an omitted TP keeps its old meaning (1); with one, the planner picks it
    // (a disaggregated fleet names each role's TP)
    tensorParallelSize:
      f !== null &&
      f.tensor_parallel_size === undefined &&
      f.disaggregated === undefined &&
      obj.slo !== undefined,
  };
  const anyOpen = open.gpu || open.engines || open.tensorParallelSize;
  if (anyOpen && obj.slo === undefined) {
    const missing = [open.gpu && "fleet.gpu", open.engines && "fleet.engines"].filter(Boolean).join(" and ");
    throw new PlanInputError(
      `slo: needed when ${missing} ${missing.includes(" and ") ? "are" : "is"} left to the planner (it sizes the fleet to meet it)`,
    );
  }
  const filled = f
    ? {
        ...obj,
        fleet: {
          ...f,
          ...(open.gpu ? { gpu: PLACEHOLDER.gpu } : {}),
          ...(open.engines ? { engines: PLACEHOLDER.engines } : {}),
          ...(open.tensorParallelSize ? { tensor_parallel_size: PLACEHOLDER.tensor_parallel_size } : {}),
        },
      }
    : obj;
  let r: ResolvedScenario;
  try {
    r = resolveScenario(filled);
  } catch (err) {
    if (err instanceof ScenarioError) throw new PlanInputError(err.problems.join("; "));
    throw err;
  }
  for (const id of Object.keys(r.scenario.ops.gpu_usd_per_hour ?? {})) {
    if (!GPUS.some((g) => g.id === id.toLowerCase()))
      throw new PlanInputError(
        `ops.gpu_usd_per_hour.${id}: unknown GPU (known: ${GPUS.map((g) => g.id).join(", ")})`,
      );
  }
  return { r, open };
}

/** the scenario with a fleet filled in (a deep copy: the base is never changed) */
export function withFleet(r: ResolvedScenario, f: FleetChoice, policy?: string): ResolvedScenario {
  const s = structuredClone(r.scenario);
  s.fleet.gpu = f.gpu;
  s.fleet.engines = f.pd ? f.pd.prefill + f.pd.decode : f.engines;
  s.fleet.tensor_parallel_size = f.pd ? f.pd.decodeTp : f.tp;
  const transfer = s.fleet.disaggregated?.kv_transfer_gb_s_per_rank ?? 40;
  s.fleet.disaggregated = f.pd
    ? {
        prefill_engines: f.pd.prefill,
        decode_engines: f.pd.decode,
        prefill_tensor_parallel_size: f.pd.prefillTp,
        decode_tensor_parallel_size: f.pd.decodeTp,
        kv_transfer_gb_s_per_rank: transfer,
      }
    : undefined;
  if (f.maxModelLen !== undefined) s.fleet.max_model_len = f.maxModelLen;
  if (policy !== undefined) s.simulation.policy = policy;
  return { ...r, scenario: s, gpu: resolveGpu(f.gpu) };
}

/**
 * The scenario at a target load: an open loop at `rps` requests/s (no session cap), or a closed loop of
 * `concurrency` sessions.
 */
export function withTarget(
  r: ResolvedScenario,
  t: { rps: number | null; concurrency: number | null },
): ResolvedScenario {
  const s = structuredClone(r.scenario);
  if (t.rps !== null) {
    s.workload.qps = t.rps;
    delete s.workload.concurrency;
  } else if (t.concurrency !== null) {
    s.workload.concurrency = t.concurrency;
    delete s.workload.qps;
  }
  return { ...r, scenario: s };
}

export function fleetOf(r: ResolvedScenario): FleetChoice {
  const f = r.scenario.fleet;
  const pd = f.disaggregated;
  return {
    gpu: r.gpu.id,
    tp: f.tensor_parallel_size,
    engines: f.engines,
    ...(f.max_model_len !== undefined ? { maxModelLen: f.max_model_len } : {}),
    ...(pd
      ? {
          pd: {
            prefill: pd.prefill_engines,
            decode: pd.decode_engines,
            prefillTp: pd.prefill_tensor_parallel_size,
            decodeTp: pd.decode_tensor_parallel_size,
          },
        }
      : {}),
  };
}

/** the context a request of this workload needs: prompt p90, its output, and a multi-round history */
export function neededContext(r: ResolvedScenario): number {
  const w = r.scenario.workload;
  const rounds = w.prefix_reuse === "multi-round" ? DERIVED_ROUNDS : 1;
  return r.promptP90 + rounds * (w.output_tokens + DERIVED_QUESTION_TOKENS);
}

/** why the engine cannot start on this fleet (vLLM's start-up errors), or null */
export function fitProblem(r: ResolvedScenario): string | null {
  try {
    kvCapacity(engineConfigFor(r, "none"));
    return null;
  } catch (err) {
    return (err as Error).message.replace(/^invalid engine config: /, "");
  }
}

/**
 * The shape this fleet runs on, if the model fits: with the scenario's max_model_len, or (when the
 * scenario leaves it out and the model's whole context does not fit) with the context the workload
 * needs, rounded up to 1024 tokens. Else the reason, as vLLM would refuse to start.
 */
export function fitShape(
  r: ResolvedScenario,
  gpu: string,
  tp: number,
): { shape: Shape } | { problem: string } {
  if (r.model.numHeads % tp !== 0)
    return { problem: `TP ${tp} does not divide the ${r.model.numHeads} attention heads of ${r.model.id}` };
  const at = withFleet(r, { gpu, tp, engines: 1 });
  const problem = fitProblem(at);
  if (problem === null) return { shape: { gpu, tp } };
  if (r.scenario.fleet.max_model_len === undefined && /max_model_len/.test(problem)) {
    const len = Math.min(r.model.maxContext, Math.ceil(neededContext(r) / 1024) * 1024);
    const sized = withFleet(r, { gpu, tp, engines: 1, maxModelLen: len });
    const left = fitProblem(sized);
    if (left === null) return { shape: { gpu, tp, maxModelLen: len } };
    return { problem: left };
  }
  return { problem };
}

/** the (GPU, TP) pairs to search: the scenario's own where it fixes them, every one that fits otherwise */
export function candidateShapes(
  input: PlanInput,
  gpus: readonly string[],
): { shapes: Shape[]; rejected: { gpu: string; tp: number; problem: string }[] } {
  const f = input.r.scenario.fleet;
  const gpuIds = input.open.gpu ? gpus : [input.r.gpu.id];
  const tps = input.open.tensorParallelSize ? TP_SIZES : [f.tensor_parallel_size];
  const shapes: Shape[] = [];
  const rejected: { gpu: string; tp: number; problem: string }[] = [];
  for (const gpu of gpuIds) {
    for (const tp of tps) {
      const fit = fitShape(input.r, gpu, tp);
      if ("shape" in fit) shapes.push(fit.shape);
      else rejected.push({ gpu, tp, problem: fit.problem });
    }
  }
  return { shapes, rejected };
}

/**
 * A fixed fleet the model cannot start on: the one-line reason, naming the field to change and the
 * smallest TP that would fit on that GPU.
 */
export function fixedFleetProblem(r: ResolvedScenario): string | null {
  const gpu = r.gpu.id;
  const tp = r.scenario.fleet.tensor_parallel_size;
  const fit = fitShape({ ...r, scenario: { ...r.scenario, fleet: { ...r.scenario.fleet } } }, gpu, tp);
  if ("shape" in fit) return null;
  // the context is the field to change only where the scenario set it; else the planner already
  // tried the smallest context the workload needs, and the GPUs are what is short
  const field =
    r.scenario.fleet.max_model_len !== undefined && /max_model_len/.test(fit.problem)
      ? "fleet.max_model_len"
      : "fleet.tensor_parallel_size";
  const fits = TP_SIZES.filter((t) => t > tp && "shape" in fitShape(r, gpu, t));
  const hint = fits.length
    ? `; tensor_parallel_size ${fits[0]} fits on ${gpu}`
    : `; no TP up to 8 fits on ${gpu}`;
  return `${field}: ${r.model.id} cannot start on ${gpu} with tensor_parallel_size ${tp}: ${fit.problem.replace(/;.*$/, "")}${hint}`;
}
