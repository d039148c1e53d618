// The routing library's one entry for its callers (the router, the endpoint picker, the fleet
// simulator, the planner, the benchmarks): every room's public names, so a caller never depends on
// which room a name lives in.
// policy/: the vocabulary, the pure decision and its pickers
export * from "./policy/views.js";
export * from "./policy/policy.js";
export * from "./policy/cache-oracle.js";
export { RequestMemo } from "./policy/memo.js";
export { applyFilters, keepEngines } from "./policy/filter-chain.js";
export * from "./policy/decide.js";
export { hash32, unitHash } from "./policy/hash.js";
// the policies by name, and their configuration
export * from "./policies.js";
export * from "./plugins/index.js";
export * from "./config.js";
// cost/: load between scrapes, queued prefill, engine timing, the TTFT model, SLOs, late binding
export * from "./cost/engine-load.js";
export * from "./cost/prefill-ledger.js";
export * from "./cost/late-binding.js";
export * from "./cost/timing.js";
export * from "./cost/ttft-model.js";
export * from "./cost/slo.js";
// prefix/: the approximate prefix index and the oracle over it
export * from "./prefix/prefix-index.js";
export * from "./prefix/prefix-oracle.js";
// sessions/: which session a request belongs to
export * from "./sessions/session-identity.js";
