// Secrets out of plain config, on `helm template` output: the tenancy Redis password from a Secret
// (mounted as tenancy.redis.passwordFile; a password inside the URL value fails the render, naming the
// Secret option, and no ConfigMap holds it), the chart's Valkey Cluster L2 with a password from a
// Secret on every server (requirepass, masterauth), in the probes and the join, and in LMCache's valkey
// adapter, TLS as an option; the rendered server script run on a real redis-server refuses a client
// without the password. The runtime LoRA guard fails the render with network policies off too.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { freePorts } from "../../bench/support/cli.js";
import { parseTenancyConfig } from "../../src/tenancy/config.js";
import { byKind, container, envOf, one, renderCache, renderRaw, type K8sObject } from "./chart.js";
import { findTool, requireTool } from "./tools.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const TENANCY = "tenancy-values.yaml";
const PASSWORD = "n0t-in-any-configmap";
const REDIS_SECRET = ["--set", "router.tenancy.redisPasswordSecret.name=limits-redis"];
const REDIS_URL = (url: string) => ["--set", `router.tenancy.config.redis.url=${url}`];
const CLUSTER_AUTH = ["--set", "engines.offload.l2.cluster.auth.secretName=kv-auth"];

/** the L2 adapter JSON of the MP server */
function adapterOf(objs: K8sObject[]): Record<string, unknown> {
  const args: string[] = container(one(objs, "DaemonSet", "-lmcache")).args;
  const a = args.find((x) => x.startsWith("--l2-adapter="))!;
  return JSON.parse(a.slice("--l2-adapter=".length));
}

const secretRef = (e: Any) => e?.valueFrom?.secretKeyRef as { name: string; key: string } | undefined;

describe("helm chart: secrets out of plain config", { timeout: 300_000 }, () => {
  const renderOf = renderCache();

  it("a password inside the tenancy Redis URL fails the render, naming router.tenancy.redisPasswordSecret", (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    for (const url of [
      `redis://:${PASSWORD}@redis:6379`,
      `rediss://user:${PASSWORD}@redis.cache.svc:6380/2`,
    ]) {
      const r = renderRaw(helm, TENANCY, REDIS_URL(url));
      assert.notEqual(r.status, 0, url);
      assert.match(r.stderr, /router\.tenancy\.config\.redis\.url carries a password/);
      assert.match(r.stderr, /router\.tenancy\.redisPasswordSecret/);
    }
    // a user without a password (an ACL user whose password comes from the Secret) renders
    assert.equal(
      renderRaw(helm, TENANCY, [...REDIS_URL("redis://limits@redis:6379"), ...REDIS_SECRET]).status,
      0,
    );
    const own = renderRaw(helm, TENANCY, [
      ...REDIS_URL("redis://redis:6379"),
      "--set",
      "router.tenancy.config.redis.passwordFile=/x",
    ]);
    assert.notEqual(own.status, 0);
    assert.match(own.stderr, /passwordFile: set by the chart from router\.tenancy\.redisPasswordSecret/);
  });

  it("with redisPasswordSecret the router reads the password from the mounted Secret and no ConfigMap holds it", (t) => {
    const objs = renderOf(t, TENANCY, [...REDIS_URL("redis://redis.cache.svc:6379"), ...REDIS_SECRET]);
    if (!objs) return;
    const cm = byKind(objs, "ConfigMap").find((c) => c.metadata.name.endsWith("-router-config"))!;
    const cfg = parse(cm.data!["router.yaml"]!) as { tenancy: Record<string, Any> };
    assert.equal(cfg.tenancy.redis.url, "redis://redis.cache.svc:6379");
    assert.equal(cfg.tenancy.redis.passwordFile, "/etc/switchyard/redis-password/password");
    // the router's own schema takes the block as rendered
    const parsed = parseTenancyConfig({ ...cfg.tenancy, keysDir: undefined, cacheSaltSecretFile: "/x" });
    assert.equal(parsed.redis!.passwordFile, "/etc/switchyard/redis-password/password");
    for (const c of byKind(objs, "ConfigMap"))
      assert.ok(!JSON.stringify(c.data ?? {}).includes(PASSWORD), `${c.metadata.name} holds no password`);
    const deploy = one(objs, "Deployment", "-router");
    const vol = deploy.spec.template.spec.volumes.find((v: Any) => v.name === "redis-password");
    assert.deepEqual(vol.secret.secretName, "limits-redis");
    assert.deepEqual(vol.secret.items, [{ key: "password", path: "password" }]);
    const mount = container(deploy).volumeMounts.find((m: Any) => m.name === "redis-password");
    assert.equal(mount.mountPath, "/etc/switchyard/redis-password");
    assert.equal(mount.readOnly, true);
  });

  it("the Valkey Cluster L2 with auth: requirepass and masterauth from the Secret on every server, the probes and the join authenticated, LMCache's adapter sends it", (t) => {
    const objs = renderOf(t, "kv-cluster-values.yaml", CLUSTER_AUTH);
    if (!objs) return;
    const sts = one(objs, "StatefulSet", "-kv-cluster");
    const c = sts.spec.template.spec.containers[0];
    assert.deepEqual(c.command, ["sh", "-c"]);
    const script: string = c.args[0];
    assert.match(script, /requirepass "%s"\\nmasterauth "%s"/);
    assert.match(script, /exec valkey-server \/tmp\/auth\.conf "\$@"/);
    assert.ok(!c.args.includes(PASSWORD) && !c.args.some((a: string) => a.includes("VALKEY_PASSWORD)")));
    assert.equal(c.args[c.args.indexOf("--protected-mode") + 1], "yes");
    const env = envOf(c);
    for (const name of ["VALKEY_PASSWORD", "VALKEYCLI_AUTH", "REDISCLI_AUTH"])
      assert.deepEqual(secretRef(env.get(name)), { name: "kv-auth", key: "password" }, name);
    assert.match(c.livenessProbe.exec.command[2], /^valkey-cli -p 6379 ping \| grep -q PONG$/);
    const job = byKind(objs, "Job").find((j) => j.metadata.name.includes("-kv-cluster-join-"))!;
    const jenv = envOf(job.spec.template.spec.containers[0]);
    assert.deepEqual(secretRef(jenv.get("REDISCLI_AUTH")), { name: "kv-auth", key: "password" });
    // LMCache 0.5.6's valkey adapter takes `username`/`password` but hands glide's
    // ServerCredentials(password, username) them in the wrong order: the password goes in `username`
    // (the interop valkey group connects only so)
    const a = adapterOf(objs);
    assert.equal(a.username, "$(LMCACHE_L2_PASSWORD)");
    assert.equal(a.password, "default");
    assert.equal(a.cluster_mode, true);
    const mp = container(one(objs, "DaemonSet", "-lmcache"));
    assert.deepEqual(secretRef(envOf(mp).get("LMCACHE_L2_PASSWORD")), { name: "kv-auth", key: "password" });
    for (const s of byKind(objs, "Secret"))
      assert.ok(!JSON.stringify(s).includes("requirepass"), "the chart makes no Secret of its own for it");
  });

  it("the Valkey Cluster L2 with TLS: the client port, bus and replication on TLS, the adapter with tls_enable and the CA; a missing Secret fails", (t) => {
    const tls = [...CLUSTER_AUTH, "--set", "engines.offload.l2.cluster.tls.enabled=true"];
    const objs = renderOf(t, "kv-cluster-values.yaml", [
      ...tls,
      "--set",
      "engines.offload.l2.cluster.tls.secretName=kv-tls",
    ]);
    if (!objs) return;
    const c = one(objs, "StatefulSet", "-kv-cluster").spec.template.spec.containers[0];
    const opt = (name: string) => c.args[c.args.indexOf(name) + 1];
    assert.equal(opt("--port"), "0");
    assert.equal(opt("--tls-port"), "6379");
    assert.equal(opt("--tls-cluster"), "yes");
    assert.equal(opt("--tls-replication"), "yes");
    assert.match(c.readinessProbe.exec.command[2], /valkey-cli --tls --cacert \/tls\/ca\.crt/);
    assert.equal(adapterOf(objs).tls_enable, true);
    const mp = container(one(objs, "DaemonSet", "-lmcache"));
    assert.equal(envOf(mp).get("SSL_CERT_FILE")?.value, "/etc/lmcache/l2-tls/ca.crt");
    const helm = requireTool(t, "helm")!;
    const missing = renderRaw(helm, "kv-cluster-values.yaml", tls);
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /tls\.enabled needs engines\.offload\.l2\.cluster\.tls\.secretName/);
  });

  it("the rendered server script on a real redis-server: a client without the password is refused, with it served, masterauth set", async (t) => {
    const objs = renderOf(t, "kv-cluster-values.yaml", [
      ...CLUSTER_AUTH,
      "--set",
      "engines.offload.l2.cluster.image.repository=redis",
    ]);
    if (!objs) return;
    const server = findTool("redis-server");
    const cli = findTool("redis-cli");
    if (!server || !cli) return t.skip("redis-server not installed (.ci/install-tools.sh installs it)");
    const [port, bus] = await freePorts(2);
    const dir = mkdtempSync(join(tmpdir(), "sy-kv-auth-"));
    const c = one(objs, "StatefulSet", "-kv-cluster").spec.template.spec.containers[0];
    const [script, arg0, ...opts] = c.args as string[];
    const args = opts.map((a, i, all) => {
      const prev = all[i - 1];
      if (prev === "--port") return String(port);
      if (prev === "--cluster-port") return String(bus);
      if (prev === "--maxmemory") return "64mb";
      return a.startsWith("/data") ? a.replace("/data", dir) : a;
    });
    const p = spawn(
      "sh",
      ["-c", script!.replaceAll("/tmp/", `${dir}/`), arg0!, ...args, "--bind", "127.0.0.1"],
      {
        stdio: ["ignore", "pipe", "pipe"],
        env: { PATH: process.env.PATH, VALKEY_PASSWORD: PASSWORD },
      },
    );
    let out = "";
    p.stdout!.on("data", (d) => (out += d));
    p.stderr!.on("data", (d) => (out += d));
    /** redis-cli against the node, the password (if any) from REDISCLI_AUTH as the probes pass it */
    const ask = (args: string[], password?: string) => {
      const env: NodeJS.ProcessEnv = { ...process.env };
      delete env.REDISCLI_AUTH;
      if (password !== undefined) env.REDISCLI_AUTH = password;
      const r = spawnSync(cli, ["-p", String(port), ...args], { encoding: "utf8", env, timeout: 10_000 });
      return `${r.stdout}${r.stderr}`;
    };
    try {
      let pong = "";
      for (let i = 0; i < 100 && !/PONG/.test(pong); i++) {
        await new Promise((r) => setTimeout(r, 100));
        pong = ask(["ping"], PASSWORD);
      }
      assert.match(pong, /PONG/, out);
      assert.match(ask(["ping"]), /NOAUTH/, "a client without the password is refused");
      assert.doesNotMatch(ask(["ping"], "guess"), /PONG/, "nor one with another password");
      assert.match(ask(["config", "get", "masterauth"], PASSWORD), new RegExp(PASSWORD));
      assert.match(ask(["info", "cluster"], PASSWORD), /cluster_enabled:1/);
    } finally {
      p.kill("SIGKILL");
      await new Promise((r) => p.once("exit", r));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("runtime LoRA updating with a gateway InferencePool fails the render with network policies off too", (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    for (const np of ["true", "false"]) {
      const r = renderRaw(helm, undefined, [
        ...["--set", "engines.lora.enabled=true", "--set", "engines.lora.runtimeUpdating=true"],
        ...["--set", "engines.lora.volume.persistentVolumeClaim.claimName=adapters"],
        ...["--set", "gateway.inferencePool.enabled=true", "--set", `networkPolicy.enabled=${np}`],
      ]);
      assert.notEqual(r.status, 0, `networkPolicy.enabled=${np}`);
      assert.match(r.stderr, /unauthenticated load API/);
    }
  });
});
