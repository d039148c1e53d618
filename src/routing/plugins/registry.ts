// Scorers and policies by name, as the Gateway API Inference Extension composes its plugins: a router's
// config (and a fleet scenario) adds scorers to any policy that picks by score (`scorers: [{ name,
// weight }]`), and names its policy. Each plugin folder exports its scorer or its policy's factory;
// plugins/index.ts registers every one by name.
import type { Policy, Scorer } from "../policy/policy.js";
import type { PolicyFactory, PolicyOptions } from "./policy-options.js";
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

const policies = new Map<string, PolicyFactory>();

/** a policy by name: its folder's factory (plugins/index.ts registers each) */
export function registerPolicy(name: string, factory: PolicyFactory): void {
  if (policies.has(name)) throw new InvariantError(`policy '${name}' is registered twice`);
  policies.set(name, factory);
}

/** the registered policies' names, sorted */
export function registeredPolicyNames(): string[] {
  return [...policies.keys()].sort();
}

/** The policy `name` made from `opts`; an unknown name throws, naming the ones there are. */
export function createRegisteredPolicy(name: string, opts: PolicyOptions): Policy {
  const factory = policies.get(name);
  if (!factory)
    throw new InvalidConfigError(`unknown policy '${name}' (known: ${registeredPolicyNames().join(", ")})`);
  return factory(name, opts);
}
