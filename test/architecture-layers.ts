// The layers of the code base as data the architecture test checks (test/architecture.test.ts): one row
// per folder (a sub-folder is a folder of its own), naming every folder its files may import and the
// lines the folder may hold. A reviewer who reads a new import edge here has to agree to it; an import
// that the table does not list fails the test, and so does a listed edge no file uses any more, so
// the table stays the true picture.
//
// The order of the rows is the order of the layers, from the ground floor up: a folder imports only
// from rows above its own, so no two folders import each other. The one pair that does is named in
// DOWNWARD (a folder and its sub-folder that share one design).
//
// Budgets: about a fifth above what the folder held when its budget was set, rounded up to 250 lines.
// A folder that outgrows its budget is a design question (split it, or agree to the size here), not
// a formatting one.

export interface Room {
  /** folders (repository paths) this folder's files may import */
  imports: readonly string[];
  /** the most lines its own files (not its sub-folders') may hold */
  lines: number;
}

export const ROOMS: Readonly<Record<string, Room>> = {
  // the ground floor: what every layer may share, importing nothing of ours (the turn line uses a heap)
  // containers, flags, logging, HTTP answers
  "src/collections": { imports: [], lines: 500 },
  "src/config": { imports: [], lines: 500 },
  "src/obs": { imports: [], lines: 750 },
  "src/http": { imports: [], lines: 750 },
  // wire formats several layers read or write: Prometheus text, SSE, chat messages, vLLM's block hashes
  "src/protocol": { imports: [], lines: 750 },
  // GPU and model profiles: the catalogue, a user's YAML file, a Hugging Face model folder
  "src/models": { imports: [], lines: 750 },
  // the line sliced CPU work waits in between turns of the event loop
  "src/eventloop": { imports: ["src/collections"], lines: 250 },
  // the one seeded PRNG and its hash mixes
  "src/random": { imports: [], lines: 250 },

  // libraries: the KV-event wire format, tokenizers, the engine model, workloads, the cache server,
  // tenants, engine discovery
  "src/kvevents": { imports: ["src/obs"], lines: 3500 },
  "src/tokenizer": { imports: ["src/eventloop", "src/protocol"], lines: 2500 },
  // the engine emits KV events as values (kvevents/events.ts, types only)
  "src/engine": { imports: ["src/collections", "src/kvevents", "src/models", "src/protocol"], lines: 2500 },
  "src/workload": { imports: ["src/random"], lines: 1500 },
  "src/cacheserver": { imports: ["src/config", "src/obs"], lines: 3000 },
  "src/tenancy": { imports: ["src/collections", "src/config", "src/http", "src/obs"], lines: 2750 },
  "src/discovery": { imports: ["src/config", "src/obs"], lines: 1000 },

  // routing policies: pure functions of a fleet snapshot; predictive routing uses the engine's step time
  "src/routing": {
    imports: [
      "src/collections",
      "src/engine",
      "src/models",
      "src/protocol",
      "src/random",
      "src/routing/baselines",
      "src/routing/scorers",
    ],
    lines: 3500,
  },
  "src/routing/scorers": { imports: ["src/routing"], lines: 250 },
  // the peers' designs as baselines, policies over the library's types, filters and oracles
  "src/routing/baselines": { imports: ["src/collections", "src/routing"], lines: 750 },

  // the programs: sim, router, endpoint picker, bench, fleet simulator, planner, operator commands
  // the sim's LMCache connector speaks the cache server's lm:// protocol with its client
  "src/sim": {
    imports: [
      "src/cacheserver",
      "src/collections",
      "src/config",
      "src/engine",
      "src/http",
      "src/kvevents",
      "src/models",
      "src/obs",
      "src/protocol",
      "src/random",
      "src/tokenizer",
    ],
    lines: 10000,
  },
  // the endpoint picker decides with the router's policy and admits with its tenants
  "src/epp": { imports: ["src/http", "src/obs", "src/routing", "src/tenancy"], lines: 2250 },

  // the router's rooms, from its configuration up to the edge and the cluster; src/router itself is the
  // wiring (index.ts, cli.ts)
  "src/router/config": {
    imports: ["src/config", "src/discovery", "src/kvevents", "src/obs", "src/routing", "src/tenancy"],
    lines: 1000,
  },
  "src/router/request": { imports: ["src/http", "src/protocol", "src/tenancy"], lines: 1000 },
  "src/router/telemetry": {
    imports: ["src/obs", "src/router/config", "src/router/request", "src/tenancy"],
    lines: 1250,
  },
  "src/router/engines": {
    imports: ["src/discovery", "src/obs", "src/router/config", "src/routing"],
    lines: 1500,
  },
  "src/router/migration": {
    imports: ["src/http", "src/obs", "src/router/config", "src/router/engines", "src/router/request"],
    lines: 1500,
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
    lines: 750,
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
    lines: 2500,
  },
  "src/router/dataplane": {
    imports: [
      "src/collections",
      "src/eventloop",
      "src/http",
      "src/obs",
      "src/router/config",
      "src/router/engines",
      "src/router/migration",
      "src/router/pd",
      "src/router/request",
      "src/router/telemetry",
      "src/routing",
    ],
    lines: 2500,
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
    lines: 2250,
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
    lines: 2750,
  },
  "src/router": {
    imports: [
      "src/config",
      "src/discovery",
      "src/obs",
      "src/router/cluster",
      "src/router/config",
      "src/router/edge",
      "src/routing",
      "src/tenancy",
    ],
    lines: 750,
  },

  // calibrate fits the engine model's timing (src/engine) to a GPU profile (src/models); the fit took
  // the folder near its first budget
  "src/bench": {
    imports: [
      "src/config",
      "src/engine",
      "src/models",
      "src/obs",
      "src/protocol",
      "src/random",
      "src/workload",
    ],
    lines: 3000,
  },
  // the disaggregated fleet (prefill and decode pools in virtual time) took it past its first budget
  "src/fleet": {
    imports: ["src/config", "src/engine", "src/models", "src/random", "src/routing", "src/workload"],
    lines: 2500,
  },
  // the planner draws its throughput/interactivity front with the bench's SVG panels
  "src/planner": {
    imports: [
      "src/bench",
      "src/config",
      "src/engine",
      "src/fleet",
      "src/models",
      "src/routing",
      "src/workload",
    ],
    lines: 3750,
  },
  "src/ops": { imports: ["src/config", "src/obs", "src/protocol"], lines: 1500 },

  // the one entry point: dispatches to every program; nothing imports it
  "src/cli": {
    imports: [
      "src/bench",
      "src/cacheserver",
      "src/config",
      "src/fleet",
      "src/kvevents",
      "src/obs",
      "src/ops",
      "src/planner",
      "src/router",
      "src/routing",
      "src/sim",
    ],
    lines: 1000,
  },

  // outside the package: the benchmarks may use any layer, never the tests
  // what benchmarks and tests share to start and drive a live stack
  "bench/harness": { imports: ["src/engine", "src/kvevents", "src/router"], lines: 500 },
  bench: {
    imports: [
      "bench/harness",
      "src/bench",
      "src/collections",
      "src/config",
      "src/engine",
      "src/fleet",
      "src/kvevents",
      "src/models",
      "src/ops",
      "src/protocol",
      "src/random",
      "src/router",
      "src/router/kv",
      "src/router/migration",
      "src/routing",
      "src/sim",
      "src/tenancy",
      "src/tokenizer",
      "src/workload",
    ],
    // a program per benchmark; past 9,000 with the router's instruction count by function, agreed
    lines: 9500,
  },
  // build and interop scripts load the compiled package (dist/src/...); gen-config-doc runs the CLI
  "scripts/interop": { imports: [], lines: 1750 },
  scripts: { imports: ["scripts/interop", "src/cacheserver", "src/cli", "src/ops"], lines: 1000 },
};

/** Listed edges that point down the table: a folder and its sub-folder that import each other. */
export const DOWNWARD: readonly (readonly [from: string, to: string])[] = [
  // the policies' index and config name the scorers, which score with the policies' types and loads
  ["src/routing", "src/routing/scorers"],
  // the policies' index names the baselines, which decide with the library's filters, memos and types
  ["src/routing", "src/routing/baselines"],
];

/** Folders whose code is a pure function of its inputs: no I/O, no clock, no unseeded randomness. */
export const PURE: readonly string[] = ["src/engine", "src/routing", "src/workload"];

/** A use the purity rules would refuse, agreed to by name: the file, what it uses, and why. */
export interface PurityException {
  file: string;
  uses: string;
  why: string;
}

export const PURITY_EXCEPTIONS: readonly PurityException[] = [];

/** A sanity ceiling per file; the folder budgets above are the real measure. */
export const FILE_CEILING = 900;
