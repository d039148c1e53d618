// Every scorer the config may name. A new scorer is one file in this folder that calls registerScorer,
// plus its import line here.
import { registerScorer } from "./registry.js";
import { kvFreeScorer, loadScorer } from "./least-load.js";
import "./decode-batch.js";

// least-load's two scorers, at the weight the config gives them
registerScorer("load", (weight) => ({ ...loadScorer, weight }));
registerScorer("kv-free", (weight) => ({ ...kvFreeScorer, weight }));

export { createScorer, registerScorer, scorerNames, type ScorerFactory } from "./registry.js";
export { kvFreeScorer, loadScorer } from "./least-load.js";
