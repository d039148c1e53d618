// Scorers by name, so a router's config (and a fleet scenario) can add them to any policy that picks by
// score, as the Gateway API Inference Extension composes its plugins: `scorers: [{ name, weight }]`.
// Each plugin folder exports its scorer; plugins/index.ts registers every one by name.
import type { Scorer } from "../policy/policy.js";
import { InvalidConfigError, InvariantError } from "../../errors/index.js";

/** makes a scorer with the weight the config gives it */
export type ScorerFactory = (weight: number) => Scorer;

const factories = new Map<string, ScorerFactory>();

export function registerScorer(name: string, factory: ScorerFactory): void {
  if (factories.has(name)) throw new InvariantError(`scorer '${name}' is registered twice`);
  factories.set(name, factory);
}

/** the registered scorers' names, sorted (config validation, docs) */
export function scorerNames(): string[] {
  return [...factories.keys()].sort();
}

/** One scorer from its config entry; an unknown name throws, naming the ones there are. */
export function createScorer(name: string, weight: number): Scorer {
  const factory = factories.get(name);
  if (!factory) throw new InvalidConfigError(`unknown scorer '${name}' (known: ${scorerNames().join(", ")})`);
  if (!(weight >= 0) || !Number.isFinite(weight))
    throw new InvalidConfigError(`scorer '${name}': weight must be ≥ 0`);
  return factory(weight);
}
