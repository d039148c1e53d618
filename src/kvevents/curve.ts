// ZMQ CURVE keys for the KV-event and peer sockets: who may publish to the router, and which publisher
// the router believes. vLLM's publisher has no authentication at all, so anyone who reaches a bound
// KV-event socket could publish any engine's topic and steer routing; where Switchyard holds both ends
// (its sims, its router, its replicas) CURVE closes that. Keys are Z85 text, 40 characters, as
// zmq_curve_keypair (and `zeromq.curveKeyPair()`) write them, read from files: a mounted Kubernetes
// Secret or what `switchyard up --kv-curve` writes. A public key is derived from its secret key
// (X25519, node:crypto), so a key directory needs no public key file and cannot hold a mismatched one.
import { createHash, createHmac, createPrivateKey, createPublicKey, diffieHellman } from "node:crypto";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { curveKeyPair } from "zeromq";
import { InvalidConfigError } from "../errors/index.js";

/** Z85's alphabet (ZMQ RFC 32). */
const Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
const Z85_INDEX = new Map([...Z85].map((c, i) => [c, i]));
const KEY_RE = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

/** Files this large are not key files; they are refused before being read. */
const MAX_KEY_FILE_BYTES = 64 * 1024;
/** An allow-list longer than this is a mistake, not a fleet. */
const MAX_CLIENT_KEYS = 4096;

/** PKCS#8 DER prefix of a raw 32-byte X25519 private key. */
const X25519_PKCS8 = Buffer.from("302e020100300506032b656e04220420", "hex");
/** SPKI DER prefix of a raw 32-byte X25519 public key. */
const X25519_SPKI = Buffer.from("302a300506032b656e032100", "hex");

export class CurveKeyError extends InvalidConfigError {
  override name = "CurveKeyError";
}

export function isZ85Key(text: string): boolean {
  return KEY_RE.test(text);
}

/** A 40-character Z85 key → its 32 bytes. */
export function z85Decode(key: string): Buffer {
  if (!isZ85Key(key)) throw new CurveKeyError("not a 40-character Z85 key");
  const out = Buffer.allocUnsafe(32);
  for (let i = 0; i < 8; i++) {
    let v = 0;
    for (let j = 0; j < 5; j++) v = v * 85 + Z85_INDEX.get(key[i * 5 + j]!)!;
    if (v > 0xffffffff) throw new CurveKeyError("not a 40-character Z85 key");
    out.writeUInt32BE(v, i * 4);
  }
  return out;
}

/** 32 bytes → a 40-character Z85 key. */
export function z85Encode(bytes: Buffer): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 4) {
    let v = bytes.readUInt32BE(i);
    let chunk = "";
    for (let j = 0; j < 5; j++) {
      chunk = Z85[v % 85]! + chunk;
      v = Math.floor(v / 85);
    }
    s += chunk;
  }
  return s;
}

/** The public key of a CURVE secret key (both Z85). */
export function publicKeyOf(secretKey: string): string {
  const priv = createPrivateKey({
    key: Buffer.concat([X25519_PKCS8, z85Decode(secretKey)]),
    format: "der",
    type: "pkcs8",
  });
  const spki = createPublicKey(priv).export({ type: "spki", format: "der" });
  return z85Encode(spki.subarray(spki.length - 32));
}

/**
 * The key a publisher and a collector share (X25519 of one's secret key and the other's public key,
 * hashed): a collector cannot tell which admitted connection a message came on, so a publisher that
 * connects out signs each message with it, and the collector checks the signature with the key of the
 * engine the topic names. Only the holder of that engine's secret key (or the collector's) has it.
 */
export function sharedMacKey(secretKey: string, peerPublicKey: string): Buffer {
  const privateKey = createPrivateKey({
    key: Buffer.concat([X25519_PKCS8, z85Decode(secretKey)]),
    format: "der",
    type: "pkcs8",
  });
  const publicKey = createPublicKey({
    key: Buffer.concat([X25519_SPKI, z85Decode(peerPublicKey)]),
    format: "der",
    type: "spki",
  });
  return createHash("sha256")
    .update("switchyard/kv-topic-mac/v1\0")
    .update(diffieHellman({ privateKey, publicKey }))
    .digest();
}

/** Bytes of a message's signature frame. */
export const TOPIC_MAC_BYTES = 16;

/** A KV-event message's signature: HMAC-SHA256 over its topic (length first), sequence and payload. */
export function topicMac(key: Buffer, topic: Buffer, seq: Buffer, payload: Buffer): Buffer {
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(topic.length);
  return createHmac("sha256", key)
    .update(len)
    .update(topic)
    .update(seq)
    .update(payload)
    .digest()
    .subarray(0, TOPIC_MAC_BYTES);
}

export interface CurveKeyPair {
  publicKey: string;
  secretKey: string;
}

export function newKeyPair(): CurveKeyPair {
  return curveKeyPair();
}

/**
 * The keys one process uses on its KV-event (or peer) sockets, each by its ZMQ role:
 * - `secretKey` (and the public key derived from it): this process's own pair, as a CURVE server
 *   (a bound PUB, a collector) and as a client;
 * - `serverKey`: the public key of the server this process connects to (ZMQ_CURVE_SERVERKEY): the
 *   router's publishers' key, or the collector's key for a publisher that connects out. A client that
 *   holds it talks only to a server holding the matching secret key;
 * - `clientKeys`: as a server, the clients allowed in (checked through ZAP, zap.ts); null = any client
 *   that knows the server's public key (CURVE without ZAP authenticates the server only).
 */
export interface CurveKeys {
  publicKey: string;
  secretKey: string;
  serverKey: string | null;
  clientKeys: readonly string[] | null;
  /**
   * each engine's own public key by its base URL (`engines.keys`): the router believes an engine's
   * KV events only from the holder of that key's secret, so one engine's key cannot publish as
   * another; null when none is configured (the shared `serverKey` then stands for every engine)
   */
  engineKeys?: ReadonlyMap<string, string> | null;
  /** where they came from, for logs (a directory or the secret key file; never a key) */
  source: string;
}

/** What a CURVE client socket needs: its own keys and the public key of the server it will believe. */
export interface CurveClient {
  keys: CurveKeys;
  serverKey: string;
}

/** Where the keys are: a directory (a mounted Secret) and/or files named one by one. */
export interface CurveKeyFiles {
  /** holds `secret.key`, and optionally `public.key` (checked against it), `server.key`, `clients.keys` */
  dir?: string | undefined;
  secretKeyFile?: string | undefined;
  publicKeyFile?: string | undefined;
  serverKeyFile?: string | undefined;
  clientKeysFile?: string | undefined;
  engineKeysFile?: string | undefined;
}

/** File names in a key directory. */
export const KEY_DIR_FILES = {
  secret: "secret.key",
  public: "public.key",
  server: "server.key",
  clients: "clients.keys",
  engines: "engines.keys",
} as const;

/**
 * `engines.keys`: one engine a line, `<engine base URL> <Z85 public key>` (`#` comments, blank lines
 * skipped). Errors name the file and line.
 */
function engineKeysIn(text: string, path: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [url, key, extra] = line.split(/\s+/);
    let base: string | undefined;
    try {
      base = url ? new URL(url).origin : undefined;
    } catch {
      base = undefined;
    }
    if (!base || !key || extra !== undefined || !isZ85Key(key))
      throw new CurveKeyError(
        `engine keys file ${path}, line ${i + 1}: expected '<engine URL> <40-character Z85 public key>'`,
      );
    if (out.has(base))
      throw new CurveKeyError(`engine keys file ${path}, line ${i + 1}: ${base} named twice`);
    out.set(base, key);
  }
  if (out.size > MAX_CLIENT_KEYS)
    throw new CurveKeyError(`engine keys file ${path}: over ${MAX_CLIENT_KEYS} engines`);
  return out;
}

/**
 * The keys as a server that publishers connect to (a collector, a relay) uses them: the clients let in
 * are `clients.keys` and every engine's own key (`engines.keys`).
 */
export function withEnginePublishers(keys: CurveKeys): CurveKeys {
  if (!keys.engineKeys?.size) return keys;
  return { ...keys, clientKeys: [...new Set([...(keys.clientKeys ?? []), ...keys.engineKeys.values()])] };
}

/** An engine's base URL as `engines.keys` is keyed (scheme, host and port; no path). */
export function engineKeyFor(keys: CurveKeys, url: string): string | undefined {
  if (!keys.engineKeys) return undefined;
  try {
    return keys.engineKeys.get(new URL(url).origin);
  } catch {
    return undefined;
  }
}

/**
 * How a subscriber reaches one publisher, the rule every event subscriber follows: plain where the
 * publisher is marked plain or the subscriber has no keys (the caller warns as its case asks); else
 * CURVE with the first server key named (the publisher's own, then `fallback`, e.g. its line in
 * engines.keys, then the shared server.key); "no-key" where none is named: the publisher is not
 * subscribed to, as taking it in plain would undo the keys.
 */
export function curveClientFor(
  keys: CurveKeys | null,
  publisher: { plain?: boolean | undefined; serverKey?: string | undefined },
  fallback?: string,
): { mode: "plain" } | { mode: "curve"; curve: CurveClient } | { mode: "no-key" } {
  if (publisher.plain || !keys) return { mode: "plain" };
  const serverKey = publisher.serverKey ?? fallback ?? keys.serverKey;
  return serverKey ? { mode: "curve", curve: { keys, serverKey } } : { mode: "no-key" };
}

function readSmall(path: string, what: string, optional: boolean): string | null {
  try {
    if (statSync(path).size > MAX_KEY_FILE_BYTES) throw new CurveKeyError(`${what} ${path} is over 64 KiB`);
    return readFileSync(path, "utf8");
  } catch (err) {
    if (err instanceof CurveKeyError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (optional && code === "ENOENT") return null;
    throw new CurveKeyError(`cannot read ${what} ${path}: ${code ?? "error"}`);
  }
}

/**
 * The keys in a file's text: one Z85 key a line; `#` comments and blank lines skipped. Errors name the
 * file and line, never the text (it may be a secret key).
 */
function keysIn(text: string, path: string, what: string): string[] {
  const keys: string[] = [];
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (!isZ85Key(line))
      throw new CurveKeyError(`${what} ${path}, line ${i + 1}: not a 40-character Z85 CURVE key`);
    keys.push(line);
  }
  return keys;
}

/**
 * Refuses a secret key file every user can read: anyone on the host could then publish as this
 * engine or router. A Kubernetes Secret mounts files 0644 unless told otherwise: `defaultMode: 0400`.
 */
function checkSecretMode(path: string): void {
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o004)
    throw new CurveKeyError(
      `secret key file ${path} is readable by every user (mode ${mode.toString(8).padStart(4, "0")}): ` +
        "chmod 600 it (in a Kubernetes Secret volume: defaultMode: 0400)",
    );
}

function oneKey(path: string, what: string, optional: boolean): string | null {
  const text = readSmall(path, what, optional);
  if (text === null) return null;
  const keys = keysIn(text, path, what);
  if (keys.length !== 1) throw new CurveKeyError(`${what} ${path}: expected one key, found ${keys.length}`);
  return keys[0]!;
}

/** Reads and checks the keys `files` names. Synchronous: a few small files, at startup or reload. */
export function loadCurveKeys(files: CurveKeyFiles): CurveKeys {
  const inDir = (name: string) => (files.dir ? join(files.dir, name) : undefined);
  const secretPath = files.secretKeyFile ?? inDir(KEY_DIR_FILES.secret);
  if (!secretPath) throw new CurveKeyError("CURVE keys need secretKeyFile or dir");
  const secretKey = oneKey(secretPath, "secret key file", false)!;
  checkSecretMode(secretPath);
  const publicKey = publicKeyOf(secretKey);
  const publicPath = files.publicKeyFile ?? inDir(KEY_DIR_FILES.public);
  if (publicPath) {
    const given = oneKey(publicPath, "public key file", files.publicKeyFile === undefined);
    if (given !== null && given !== publicKey)
      throw new CurveKeyError(`public key file ${publicPath} does not match secret key file ${secretPath}`);
  }
  const serverPath = files.serverKeyFile ?? inDir(KEY_DIR_FILES.server);
  const serverKey = serverPath
    ? oneKey(serverPath, "server key file", files.serverKeyFile === undefined)
    : null;
  const clientsPath = files.clientKeysFile ?? inDir(KEY_DIR_FILES.clients);
  let clientKeys: string[] | null = null;
  if (clientsPath) {
    const text = readSmall(clientsPath, "client keys file", files.clientKeysFile === undefined);
    if (text !== null) {
      clientKeys = [...new Set(keysIn(text, clientsPath, "client keys file"))];
      if (clientKeys.length > MAX_CLIENT_KEYS)
        throw new CurveKeyError(`client keys file ${clientsPath}: over ${MAX_CLIENT_KEYS} keys`);
    }
  }
  const enginesPath = files.engineKeysFile ?? inDir(KEY_DIR_FILES.engines);
  let engineKeys: Map<string, string> | null = null;
  if (enginesPath) {
    const text = readSmall(enginesPath, "engine keys file", files.engineKeysFile === undefined);
    if (text !== null) engineKeys = engineKeysIn(text, enginesPath);
  }
  return { publicKey, secretKey, serverKey, clientKeys, engineKeys, source: files.dir ?? secretPath };
}

/**
 * Writes a key directory as loadCurveKeys reads it: the directory 0700, the secret key 0600. What
 * `switchyard up --kv-curve` hands each process.
 */
export function writeKeyDir(
  dir: string,
  pair: CurveKeyPair,
  opts: {
    serverKey?: string;
    clientKeys?: readonly string[];
    /** engine base URL → its public key (`engines.keys`) */
    engineKeys?: ReadonlyMap<string, string>;
  } = {},
): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, KEY_DIR_FILES.secret), `${pair.secretKey}\n`, { mode: 0o600 });
  writeFileSync(join(dir, KEY_DIR_FILES.public), `${pair.publicKey}\n`, { mode: 0o644 });
  if (opts.serverKey) writeFileSync(join(dir, KEY_DIR_FILES.server), `${opts.serverKey}\n`, { mode: 0o644 });
  if (opts.clientKeys)
    writeFileSync(join(dir, KEY_DIR_FILES.clients), opts.clientKeys.map((k) => `${k}\n`).join(""), {
      mode: 0o644,
    });
  if (opts.engineKeys)
    writeFileSync(
      join(dir, KEY_DIR_FILES.engines),
      [...opts.engineKeys].map(([url, key]) => `${url} ${key}\n`).join(""),
      { mode: 0o644 },
    );
}

/** Socket options of a CURVE server (a bound PUB, a collector's SUB): it proves it holds the secret key. */
export function curveServerOptions(keys: CurveKeys): { curveServer: true; curveSecretKey: string } {
  return { curveServer: true, curveSecretKey: keys.secretKey };
}

/**
 * Socket options of a CURVE client: it talks only to a server holding the secret key of `serverKey`,
 * and shows its own public key (which a server's ZAP allow-list may check).
 */
export function curveClientOptions(
  keys: CurveKeys,
  serverKey: string,
): { curveServerKey: string; curvePublicKey: string; curveSecretKey: string } {
  return { curveServerKey: serverKey, curvePublicKey: keys.publicKey, curveSecretKey: keys.secretKey };
}

/**
 * True when a ZMQ endpoint can only be reached from this host: ipc, inproc, or TCP on a loopback
 * address. A wildcard (`*`, `0.0.0.0`, `::`), a host name other than localhost or another address
 * is not.
 */
export function endpointIsLocal(endpoint: string): boolean {
  if (endpoint.startsWith("ipc://") || endpoint.startsWith("inproc://")) return true;
  const m = /^tcp:\/\/(?:[^;]*;)?(\[[^\]]*\]|[^:]*):/.exec(endpoint);
  if (!m) return false;
  const host = m[1]!.replace(/^\[(.*)\]$/, "$1");
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
