// The layers of the code base as data the architecture test checks (test/architecture.test.ts): one row
// per folder (a sub-folder is a folder of its own), naming every folder its files may import and the
// lines the folder may hold. A reviewer who reads a new import edge here has to agree to it; an import
// that the table does not list fails the test, and so does a listed edge no file uses any more, so
// the table stays the true picture.
//
// The order of the rows is the order of the layers, from the ground floor up: a folder imports only
// from rows above its own, so no two folders import each other. A pair that does (a folder and its
// sub-folder that share one design) is named in DOWNWARD; none does today.
//
// Budgets: at most a ninth above what the folder holds (its use is 90% of the budget or more), unless
// the row's `grows` says what it is growing by. A folder that outgrows its budget is a design question
// (split it, or agree to the size here), not a formatting one.

export interface Room {
  /** folders (repository paths) this folder's files may import */
  imports: readonly string[];
  /** the most lines its own files (not its sub-folders') may hold */
  lines: number;
  /**
   * why the budget stands more than a tenth above what the folder holds: the work it is growing by.
   * Without it the budget is trimmed to its use (within BUDGET_SLACK), so that budgets do not only grow.
   */
  grows?: string;
}

export const ROOMS: Readonly<Record<string, Room>> = {
  // the error classes and their codes: under everything, so every folder may import it (EVERYWHERE)
  "src/errors": { imports: [], lines: 117 },
  // the ground floor: what every layer may share, importing nothing of ours (the turn line uses a heap)
  // containers, flags, logging, HTTP answers
  "src/collections": { imports: [], lines: 760 },
  "src/config": { imports: [], lines: 570 },
  // (node-flags.ts: the flag check the router re-exec and its workers share)
  "src/obs": { imports: [], lines: 800 },
  // wire formats several layers read or write: Prometheus text, SSE, chat messages, vLLM's block hashes
  "src/protocol": { imports: [], lines: 750 },
  // HTTP answers end an event stream with SSE's framing
  "src/http": { imports: ["src/protocol"], lines: 542 },
  // GPU and model profiles: the catalogue, a user's YAML file, a Hugging Face model folder
  "src/models": { imports: [], lines: 675 },
  // the line sliced CPU work waits in between turns of the event loop
  "src/eventloop": { imports: ["src/collections"], lines: 93 },
  // the one seeded PRNG and its hash mixes
  "src/random": { imports: [], lines: 98 },

  // libraries: the KV-event wire format, tokenizers, the engine model, workloads, the cache server,
  // tenants, engine discovery
  "src/kvevents": { imports: ["src/obs", "src/protocol"], lines: 3500 },
  "src/tokenizer": { imports: ["src/collections", "src/eventloop", "src/protocol"], lines: 2198 },
  // the engine emits KV events as values (kvevents/events.ts, types only); its defaults are vLLM's
  // (config/vllm-defaults.ts, constants only); LoRA slots and host cache joined it
  "src/engine": {
    imports: ["src/collections", "src/config", "src/kvevents", "src/models", "src/protocol"],
    lines: 2800,
  },
  // production-trace replay (trace.ts) joined the generators
  "src/workload": { imports: ["src/random"], lines: 1700 },
  // two protocols on one store (lm:// and RESP), namespaces with shares of their own
  // the KV events of the chunks it holds: the wire format, and LMCache's chunk keys read back
  "src/cacheserver": { imports: ["src/config", "src/kvevents", "src/obs", "src/protocol"], lines: 4000 },
  // tenants grew usage read from every protocol (Messages, Responses, token-in) and key-set guards
  "src/tenancy": { imports: ["src/collections", "src/config", "src/http", "src/obs"], lines: 3600 },
  "src/discovery": { imports: ["src/config", "src/obs"], lines: 745 },

  // the SLO autoscaling decision: a pool's replicas from its signals and the engine model's step time
  "src/autoscale": { imports: ["src/engine"], lines: 750 },

  // routing policies: pure functions of a fleet snapshot, in rooms from the ground up: who a request's
  // session is, the policy's vocabulary, what a placement costs (predictive routing uses the engine's
  // step time), the prefix index, the adapter books; then the plugins (every filter, scorer, picker and
  // policy, the peers' baselines among them); src/routing itself names the policies
  "src/routing/sessions": { imports: ["src/collections", "src/protocol"], lines: 925 },
  "src/routing/policy": { imports: ["src/collections", "src/random"], lines: 540 },
  "src/routing/cost": { imports: ["src/engine", "src/routing/policy", "src/routing/sessions"], lines: 1340 },
  "src/routing/prefix": { imports: ["src/collections", "src/protocol", "src/routing/policy"], lines: 420 },
  // routing plugins, GIE's way: one filter, scorer, picker or policy per folder, registered by name in
  // src/routing/plugins (the registry); first the shared filters, their standard chain and the pickers
  "src/routing/plugins/filter-serves-model": { imports: ["src/routing/policy"], lines: 14 },
  "src/routing/plugins/filter-healthy": { imports: ["src/routing/policy"], lines: 10 },
  "src/routing/plugins/filter-not-excluded": { imports: ["src/routing/policy"], lines: 12 },
  "src/routing/plugins/filter-has-capacity": { imports: ["src/routing/policy"], lines: 16 },
  "src/routing/plugins/standard-filters": {
    imports: [
      "src/routing/plugins/filter-has-capacity",
      "src/routing/plugins/filter-healthy",
      "src/routing/plugins/filter-not-excluded",
      "src/routing/plugins/filter-serves-model",
      "src/routing/policy",
    ],
    lines: 13,
  },
  "src/routing/plugins/pick-max-score": { imports: ["src/routing/policy"], lines: 22 },
  "src/routing/plugins/round-robin": {
    imports: ["src/routing/plugins/standard-filters", "src/routing/policy"],
    lines: 45,
  },
  // the adapter books the LoRA plugins read and their callers keep
  "src/routing/lora-books": { imports: ["src/collections", "src/routing/policy"], lines: 170 },
  "src/routing/plugins/least-load": {
    imports: [
      "src/routing/cost",
      "src/routing/plugins/pick-max-score",
      "src/routing/plugins/standard-filters",
      "src/routing/policy",
    ],
    lines: 140,
  },
  "src/routing/plugins/session-affinity": {
    imports: [
      "src/routing/plugins/least-load",
      "src/routing/plugins/pick-max-score",
      "src/routing/plugins/standard-filters",
      "src/routing/policy",
    ],
    lines: 57,
  },
  "src/routing/plugins/decode-batch": { imports: ["src/routing/cost", "src/routing/policy"], lines: 27 },
  // the peers' designs as baselines, policies over the library's types and filters; vllm-router's
  // first-max picker is shared by its two
  "src/routing/plugins/pick-first-max": { imports: ["src/routing/policy"], lines: 12 },
  "src/routing/plugins/vllm-router-cache-aware": {
    imports: [
      "src/routing/plugins/pick-first-max",
      "src/routing/plugins/standard-filters",
      "src/routing/policy",
    ],
    lines: 97,
  },
  "src/routing/plugins/llm-d-sticky": {
    imports: [
      "src/routing/plugins/pick-max-score",
      "src/routing/plugins/standard-filters",
      "src/routing/policy",
    ],
    lines: 160,
  },
  "src/routing/plugins/cache-aware": {
    imports: [
      "src/routing/cost",
      "src/routing/plugins/pick-max-score",
      "src/routing/plugins/standard-filters",
      "src/routing/policy",
    ],
    lines: 460,
  },
  // a policy plugin may reuse a shared picker plugin (vllm-router's first max)
  "src/routing/plugins/vllm-router-program": {
    imports: [
      "src/collections",
      "src/routing/cost",
      "src/routing/plugins/pick-first-max",
      "src/routing/plugins/standard-filters",
      "src/routing/policy",
      "src/routing/sessions",
    ],
    lines: 530,
  },
  // LoRA placement: ours (priced in seconds), GIE's LoRA affinity, a static placement. Past its first
  // budget with the prefill queue, the router's own requests by send time and a replica's slot (the
  // sweep's hot adapters at high rates), then a new load's wait for the queued prompts (near capacity)
  "src/routing/plugins/lora-placement": {
    imports: [
      "src/collections",
      "src/routing/cost",
      "src/routing/lora-books",
      "src/routing/plugins/standard-filters",
      "src/routing/policy",
    ],
    lines: 460,
  },
  "src/routing/plugins/gie-lora-affinity": {
    imports: ["src/routing/plugins/standard-filters", "src/routing/policy"],
    lines: 85,
  },
  "src/routing/plugins/lora-static": {
    imports: [
      "src/routing/cost",
      "src/routing/plugins/filter-has-capacity",
      "src/routing/plugins/filter-healthy",
      "src/routing/plugins/filter-not-excluded",
      "src/routing/plugins/filter-serves-model",
      "src/routing/policy",
    ],
    lines: 50,
  },
  "src/routing/plugins": {
    imports: [
      "src/routing/cost",
      "src/routing/plugins/cache-aware",
      "src/routing/plugins/decode-batch",
      "src/routing/plugins/filter-has-capacity",
      "src/routing/plugins/filter-healthy",
      "src/routing/plugins/filter-not-excluded",
      "src/routing/plugins/filter-serves-model",
      "src/routing/plugins/gie-lora-affinity",
      "src/routing/plugins/least-load",
      "src/routing/plugins/llm-d-sticky",
      "src/routing/plugins/lora-placement",
      "src/routing/plugins/lora-static",
      "src/routing/plugins/pick-first-max",
      "src/routing/plugins/pick-max-score",
      "src/routing/plugins/round-robin",
      "src/routing/plugins/session-affinity",
      "src/routing/plugins/standard-filters",
      "src/routing/plugins/vllm-router-cache-aware",
      "src/routing/plugins/vllm-router-program",
      "src/routing/policy",
    ],
    lines: 185,
  },
  "src/routing": {
    imports: [
      "src/engine",
      "src/models",
      "src/routing/cost",
      "src/routing/lora-books",
      "src/routing/policy",
      "src/routing/plugins",
      "src/routing/prefix",
      "src/routing/sessions",
    ],
    // the policies by name and their configuration; the cache-aware and LoRA policies moved to plugins
    lines: 406,
  },

  // the programs: sim, router, endpoint picker, bench, fleet simulator, planner, operator commands
  // the sim's rooms, from its settings up to the APIs it serves; src/sim itself is the wiring (cli.ts,
  // app.ts, server.ts)
  // flags and YAML, LMCache and NixlConnector settings, the KV-event sources it answers
  "src/sim/config": { imports: ["src/config", "src/kvevents", "src/models", "src/protocol"], lines: 854 },
  // request bodies' schemas and vLLM's 400, the sink a request's tokens arrive through
  "src/sim/protocol": { imports: ["src/engine", "src/http"], lines: 257 },
  // what an answer says: the greedy chain, structured outputs, tool calls, logprobs
  "src/sim/outputs": {
    imports: ["src/engine", "src/http", "src/random", "src/sim/protocol", "src/tokenizer"],
    lines: 1902,
  },
  // KV connectors around the engine: LMCache (speaking the cache server's lm:// protocol) and P/D's Nixl
  "src/sim/connectors": {
    imports: [
      "src/cacheserver",
      "src/engine",
      "src/http",
      "src/kvevents",
      "src/models",
      "src/obs",
      "src/protocol",
      "src/sim/config",
      "src/sim/protocol",
    ],
    lines: 1016,
  },
  // vLLM's Prometheus families, LMCache's among them, as the claimed release writes them
  // the per-GPU work estimates size KV with the one formula src/models holds
  "src/sim/metrics": {
    // collections: the past series of vllm:lora_requests_info, kept bounded
    imports: [
      "src/collections",
      "src/config",
      "src/engine",
      "src/kvevents",
      "src/models",
      "src/sim/connectors",
    ],
    lines: 976,
  },
  // the engine on the wall clock, its steps delivered to the requests' sinks
  "src/sim/runtime": {
    imports: [
      "src/engine",
      "src/kvevents",
      "src/obs",
      "src/sim/connectors",
      "src/sim/metrics",
      "src/sim/protocol",
    ],
    lines: 490,
  },
  // what every API's handler shares: the context, prompts, one engine request, the registries
  "src/sim/serving": {
    imports: [
      "src/collections",
      "src/engine",
      "src/http",
      "src/kvevents",
      "src/models",
      "src/protocol",
      "src/random",
      "src/sim/config",
      "src/sim/connectors",
      "src/sim/metrics",
      "src/sim/outputs",
      "src/sim/protocol",
      "src/sim/runtime",
      "src/tokenizer",
    ],
    lines: 1250,
  },
  // the OpenAI APIs: completions and chat, responses, batch, pooling
  "src/sim/openai": {
    imports: [
      "src/engine",
      "src/http",
      "src/protocol",
      "src/random",
      "src/sim/outputs",
      "src/sim/protocol",
      "src/sim/runtime",
      "src/sim/serving",
    ],
    lines: 2189,
  },
  // Anthropic Messages, run as vLLM runs it: through the chat path
  "src/sim/anthropic": {
    imports: [
      "src/engine",
      "src/http",
      "src/protocol",
      "src/sim/openai",
      "src/sim/outputs",
      "src/sim/protocol",
      "src/sim/serving",
    ],
    lines: 379,
  },
  // scale-out: render and derender of every API, token ids in and out
  "src/sim/scale-out": {
    imports: [
      "src/engine",
      "src/http",
      "src/protocol",
      "src/sim/anthropic",
      "src/sim/openai",
      "src/sim/protocol",
      "src/sim/serving",
    ],
    lines: 689,
  },
  "src/sim": {
    imports: [
      "src/config",
      "src/engine",
      "src/http",
      "src/kvevents",
      "src/models",
      "src/obs",
      "src/protocol",
      "src/random",
      "src/sim/anthropic",
      "src/sim/config",
      "src/sim/connectors",
      "src/sim/metrics",
      "src/sim/openai",
      "src/sim/protocol",
      "src/sim/runtime",
      "src/sim/scale-out",
      "src/sim/serving",
      "src/tokenizer",
    ],
    lines: 952,
  },
  // the endpoint picker decides with the router's policy and admits with its tenants
  "src/epp": { imports: ["src/http", "src/obs", "src/routing", "src/tenancy"], lines: 2250 },

  // the router's rooms, from its configuration up to the edge and the cluster; src/router itself is the
  // wiring (index.ts, cli.ts, assembly.ts)
  "src/router/config": {
    imports: [
      "src/config",
      "src/discovery",
      "src/kvevents",
      "src/models",
      "src/obs",
      "src/routing",
      "src/tenancy",
    ],
    // the schema is every router option's one declaration (flags are generated from it), so it grows
    // with the options
    lines: 1250,
  },
  "src/router/request": { imports: ["src/http", "src/protocol", "src/tenancy"], lines: 957 },
  "src/router/telemetry": {
    imports: ["src/obs", "src/router/config", "src/router/request", "src/tenancy"],
    lines: 1150,
  },
  "src/router/engines": {
    // collections, http: the LoRA adapters the router loads (its books of each engine, the load's error,
    // per tenant: loads charged, fair eviction, failed loads remembered)
    imports: ["src/collections", "src/discovery", "src/http", "src/obs", "src/router/config", "src/routing"],
    lines: 2200,
  },
  // the SLO autoscaling decision on a timer over the registry's engines and the router's own counts
  "src/router/autoscale": {
    imports: [
      "src/autoscale",
      "src/engine",
      "src/models",
      "src/obs",
      "src/router/config",
      "src/router/engines",
      "src/routing",
    ],
    lines: 436,
  },
  "src/router/migration": {
    imports: [
      "src/http",
      "src/obs",
      "src/protocol",
      "src/router/config",
      "src/router/engines",
      "src/router/request",
    ],
    lines: 1187,
  },
  "src/router/pd": {
    imports: [
      "src/discovery",
      "src/http",
      "src/obs",
      "src/router/config",
      "src/router/engines",
      "src/router/request",
      "src/routing",
    ],
    lines: 378,
  },
  "src/router/kv": {
    imports: [
      "src/collections",
      "src/eventloop",
      "src/kvevents",
      "src/models",
      "src/obs",
      "src/protocol",
      "src/router/config",
      "src/router/engines",
      "src/routing",
      "src/tokenizer",
    ],
    // the shared cache servers' chunk index, the pricing of every tier by its load time, and the
    // offload tiers whose blocks are not the GPU's (LMCache's multiprocess server's chunks), and
    // hashing each engine as its release does (seed, extra-key form, hash unit); the oracle and the
    // subscriptions split into one module per job (prompt hashes, tier pricing, sources, fallback, keys);
    // the sim tokenizer's memo of long pieces' chunks; the KV index's single holders kept as numbers;
    // the prompt thread, which works long prompts out on a worker (and paces it, to know when it is
    // behind); the hash memo's spans
    lines: 4300,
  },
  "src/router/dataplane": {
    imports: [
      "src/collections",
      "src/eventloop",
      "src/http",
      "src/obs",
      "src/protocol",
      "src/router/config",
      "src/router/engines",
      "src/router/migration",
      "src/router/pd",
      "src/router/request",
      "src/router/telemetry",
      "src/routing",
    ],
    // reading an engine's 500 (vLLM's shutdown refusal, its dead engine core) before relaying it
    lines: 3150,
  },
  "src/router/edge": {
    imports: [
      "src/collections",
      "src/discovery",
      "src/epp",
      "src/eventloop",
      "src/http",
      "src/models",
      "src/obs",
      "src/protocol",
      "src/router/config",
      "src/router/dataplane",
      "src/router/engines",
      "src/router/kv",
      "src/router/migration",
      "src/router/pd",
      "src/router/request",
      "src/router/telemetry",
      "src/routing",
      "src/tenancy",
      "src/tokenizer",
    ],
    lines: 2400,
  },
  "src/router/cluster": {
    imports: [
      "src/discovery",
      "src/http",
      "src/kvevents",
      "src/obs",
      "src/router/config",
      "src/router/dataplane",
      "src/router/edge",
      "src/router/engines",
      "src/router/kv",
      "src/router/telemetry",
      "src/routing",
      "src/tenancy",
    ],
    lines: 3000,
  },
  // the wiring: assembly.ts builds every room and hands them to the edge
  "src/router": {
    imports: [
      "src/config",
      "src/discovery",
      "src/obs",
      "src/router/autoscale",
      "src/router/cluster",
      "src/router/config",
      "src/router/dataplane",
      "src/router/edge",
      "src/router/engines",
      "src/router/kv",
      "src/router/migration",
      "src/router/pd",
      "src/router/request",
      "src/router/telemetry",
      "src/routing",
      "src/tenancy",
    ],
    lines: 640,
  },

  // calibrate, once here, took the folder past its budget twice: it has a folder of its own (below)
  "src/bench": {
    imports: ["src/config", "src/obs", "src/protocol", "src/random", "src/workload"],
    lines: 2743,
  },
  // calibrate fits the engine model's timing (src/engine) to a GPU profile (src/models) from the bench's
  // results, and runs its probe and held-out check as bench runs
  "src/calibrate": {
    imports: ["src/bench", "src/config", "src/engine", "src/models", "src/workload"],
    lines: 1063,
  },
  // the disaggregated fleet (prefill and decode pools in virtual time) took it past its first budget
  "src/fleet": {
    imports: [
      "src/autoscale",
      "src/collections",
      "src/config",
      "src/engine",
      "src/models",
      "src/protocol",
      "src/random",
      "src/routing",
      "src/workload",
    ],
    // trace scenarios, the clairvoyant reference placement, P/D fleets and LoRA fleets; the autoscaler
    // in the loop; LoRA fleets inside the one loop (the router's load books, the benchmark's shape)
    lines: 3650,
  },
  // the planner draws its throughput/interactivity front with the bench's SVG panels
  "src/planner": {
    imports: [
      "src/bench",
      "src/config",
      "src/engine",
      "src/fleet",
      "src/models",
      "src/protocol",
      "src/routing",
      "src/workload",
    ],
    // with the LoRA part of a plan (lora.ts)
    lines: 4100,
  },
  "src/ops": { imports: ["src/config", "src/obs", "src/protocol"], lines: 1600 },

  // the one entry point: dispatches to every program; nothing imports it. `up` and its parts (P/D, the
  // shared tier, the cluster, --autoscale) are most of it
  "src/cli": {
    imports: [
      "src/bench",
      "src/cacheserver",
      "src/calibrate",
      "src/config",
      "src/fleet",
      "src/kvevents",
      "src/models",
      "src/obs",
      "src/ops",
      "src/planner",
      "src/router",
      "src/routing",
      "src/sim",
    ],
    // with up's P/D pools, its shared cache server (up-pd.ts, up-cache-server.ts), its Valkey Cluster
    // and its LoRA folder
    lines: 1700,
  },

  // outside the package: the benchmarks may use any layer, never the tests
  // what benchmarks and tests share: starting and driving a live stack (and probing its event loops),
  // the pieces a benchmark and its test both run
  "bench/support": {
    imports: [
      "src/autoscale",
      "src/bench",
      "src/config",
      "src/engine",
      "src/fleet",
      "src/kvevents",
      "src/models",
      "src/random",
      "src/router",
      "src/sim",
      "src/sim/config",
      "src/workload",
    ],
    // the autoscale benchmark's traces, policies and scoring joined it (its test runs them)
    lines: 2486,
  },
  // stand-in engines that benchmarks and tests both start
  "bench/support/fakes": {
    imports: ["bench/support", "src/http", "src/kvevents", "src/models", "src/protocol", "src/tokenizer"],
    lines: 1500,
  },
  // the benchmarks by purpose, each group a program per benchmark (bench/README.md is their index)
  // in-process costs: the engine step, codecs, indexes, tokenizers, the router's per-request pieces
  "bench/micro": {
    imports: [
      "bench/support",
      "src/collections",
      "src/config",
      "src/engine",
      "src/kvevents",
      "src/models",
      "src/random",
      "src/router/kv",
      "src/router/migration",
      "src/routing",
      "src/tokenizer",
      "src/workload",
    ],
    lines: 1023,
  },
  // the live router: overhead and its floors, peers, soak, chaos, starvation, huge prompts, migration
  "bench/router": {
    imports: [
      "bench/support",
      "src/config",
      "src/models",
      "src/random",
      "src/router",
      "src/tokenizer",
      "src/workload",
    ],
    lines: 3190,
  },
  // routing quality, live and in virtual time, against the peers' policies
  "bench/routing": {
    imports: [
      "bench/support",
      "src/bench",
      "src/config",
      "src/engine",
      "src/fleet",
      "src/models",
      "src/ops",
      "src/protocol",
      "src/random",
      "src/routing",
      "src/workload",
    ],
    // routing/lora joined it, then its live mode (lora-live.ts), then its sweep over adapter mixes
    lines: 5300,
  },
  // the fleet simulator: its speed, and its figures against published and live runs
  // autoscaling policies through a day of traffic in the fleet simulator
  "bench/autoscale/trace": { imports: ["bench/support", "src/autoscale", "src/config"], lines: 269 },
  "bench/fleet": {
    imports: ["bench/support", "src/engine", "src/fleet", "src/models", "src/workload"],
    lines: 423,
  },
  // the sim: its timings against the engine model, many streams, P/D
  "bench/sim": {
    imports: ["bench/support", "src/bench", "src/config", "src/router", "src/workload"],
    lines: 449,
  },
  // `switchyard bench` itself: what the client can drive, and whether its ITL is the engine's
  "bench/client": { imports: ["src/bench"], lines: 283 },
  // tenants through the live router: fair queuing, fuzzing the request path, overload by priority
  // (the overload run, four sims and a router in child processes, took it past its first budget)
  // the adapter storm makes its adapters the model's real size (src/engine's formula, src/models' profile)
  "bench/tenancy": {
    imports: [
      "bench/support",
      "bench/support/fakes",
      "src/engine",
      "src/models",
      "src/random",
      "src/router",
      "src/tenancy",
      "src/workload",
    ],
    lines: 1100,
  },
  // the cache server beside redis-server (each a child process)
  "bench/cacheserver": { imports: ["src/workload"], lines: 476 },
  // build and interop scripts load the compiled package (dist/src/...); gen-config-doc runs the CLI
  // the picker check runs a sim in-process beside the real API server
  // the valkey group starts its cluster with src/ops/kv-cluster.ts, as `up --kv-cluster` does
  // the peers' groups: vLLM (with its 0.32 release checks and every route's charge), LMCache, a Valkey
  // Cluster, Kubernetes, an OpenTelemetry Collector
  "scripts/interop": { imports: ["src/discovery", "src/ops", "src/sim", "src/sim/config"], lines: 4700 },
  scripts: { imports: ["scripts/interop", "src/cacheserver", "src/cli", "src/ops"], lines: 1300 },
};

/**
 * What a test file (anywhere under test/) may import: the package, the tests' own helpers and fixtures,
 * and of the benchmarks only their support folder (the harness and the stand-in engines). A test never
 * imports a benchmark script; no folder above imports a test (no row lists one).
 */
export const TEST_IMPORTS: readonly string[] = ["src", "test", "bench/support"];

/**
 * Folders every folder may import without its row listing them: the ground under the ground floor,
 * importing nothing of ours. An edge to one of them is neither required in a row nor reported stale.
 */
export const EVERYWHERE: readonly string[] = ["src/errors"];

/** Listed edges that point down the table: a folder and its sub-folder that import each other. */
export const DOWNWARD: readonly (readonly [from: string, to: string])[] = [];

/** Folders whose code is a pure function of its inputs: no I/O, no clock, no unseeded randomness. */
export const PURE: readonly string[] = ["src/autoscale", "src/engine", "src/routing", "src/workload"];

/** A use the purity rules would refuse, agreed to by name: the file, what it uses, and why. */
export interface PurityException {
  file: string;
  uses: string;
  why: string;
}

export const PURITY_EXCEPTIONS: readonly PurityException[] = [];

/** A sanity ceiling per file; the folder budgets above are the real measure. */
export const FILE_CEILING = 900;

/** The most lines one file of the package (src) may hold: a longer file is two jobs. */
export const SRC_FILE_CEILING = 600;

/** A row's budget is at most its use over this (rounded up: use ≥ 90% of it) unless the row says why it grows. */
export const BUDGET_SLACK = 0.9;
