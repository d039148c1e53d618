// The chart's LoRA keys: engines serve adapters from a volume with vLLM's flags and runtime updating,
// the router loads them from the same folder, and the NetworkPolicy admits only the router to the
// engines' port while their unauthenticated load API is on.
import assert from "node:assert/strict";
import { test, type TestContext } from "node:test";
import { byKind, container, one, render, renderRaw } from "./chart.js";
import { requireTool } from "./tools.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const LORA = [
  "--set",
  "engines.lora.enabled=true",
  "--set",
  "engines.lora.volume.persistentVolumeClaim.claimName=adapters",
  "--set",
  "networkPolicy.enabled=true",
];

function rendered(t: TestContext, extra: string[]) {
  const helm = requireTool(t, "helm");
  return helm ? { helm, objs: render(helm, undefined, extra) } : undefined;
}

test("engines.lora: engines get vLLM's LoRA flags, runtime updating and the adapters volume; the router --lora-dir", (t) => {
  const r = rendered(t, LORA);
  if (!r) return;
  const engine = byKind(r.objs, "Deployment").find((d) => d.metadata.name.includes("engine"))!;
  const c = container(engine);
  for (const f of ["--enable-lora", "--max-loras=8", "--max-cpu-loras=32", "--max-lora-rank=16"])
    assert.ok((c.args as string[]).includes(f), f);
  assert.ok(c.env.some((e: Any) => e.name === "VLLM_ALLOW_RUNTIME_LORA_UPDATING" && e.value === "True"));
  assert.ok(c.volumeMounts.some((m: Any) => m.name === "lora-adapters" && m.mountPath === "/adapters"));
  assert.ok(
    engine.spec.template.spec.volumes.some(
      (v: Any) => v.name === "lora-adapters" && v.persistentVolumeClaim?.claimName === "adapters",
    ),
  );
  const router = container(one(r.objs, "Deployment", "-router"));
  assert.ok((router.args as string[]).includes("--lora-dir=/adapters"));
  assert.ok((router.args as string[]).includes("--lora-max-cpu-loras=32"));
});

test("with runtime LoRA updating, only the router reaches the engines' port; an InferencePool with it is refused", (t) => {
  const r = rendered(t, LORA);
  if (!r) return;
  const np = byKind(r.objs, "NetworkPolicy").find((p) => p.metadata.name.endsWith("-engine"))!;
  const port = r.objs.length > 0 ? 8000 : 0;
  const rules = (np.spec.ingress as Any[]).filter((i) => i.ports?.some((p: Any) => p.port === port));
  assert.equal(rules.length, 1, "one rule admits the engine port");
  assert.equal(rules[0].from[0].podSelector.matchLabels["app.kubernetes.io/component"], "router");
  const refused = renderRaw(r.helm, undefined, [...LORA, "--set", "gateway.inferencePool.enabled=true"]);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /unauthenticated load API/);
});

test("engines.lora.hub: adapters on the Hub need no volume; the router loads each by its repository id", (t) => {
  const r = rendered(t, [
    "--set",
    "engines.lora.enabled=true",
    "--set",
    "engines.lora.hub[0].name=sql",
    "--set",
    "engines.lora.hub[0].repo=acme/sql-lora-r16",
  ]);
  if (!r) return;
  const engine = byKind(r.objs, "Deployment").find((d) => d.metadata.name.includes("engine"))!;
  assert.ok(!container(engine).volumeMounts.some((m: Any) => m.name === "lora-adapters"));
  assert.ok(!engine.spec.template.spec.volumes.some((v: Any) => v.name === "lora-adapters"));
  const args = container(one(r.objs, "Deployment", "-router")).args as string[];
  assert.ok(args.includes("--lora-adapter=sql=hf:acme/sql-lora-r16"), args.join(" "));
  assert.ok(!args.some((a) => a.startsWith("--lora-dir")));
  const refused = renderRaw(r.helm, undefined, ["--set", "engines.lora.enabled=true"]);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /engines\.lora\.volume .* or engines\.lora\.hub/);
});
