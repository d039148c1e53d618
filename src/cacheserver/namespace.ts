// Namespaces keep clients of one cache server apart. LMCache's lm:// client sends nothing but the
// 186-byte request header (no handshake, no credential, no field we could fill from its config), and
// anything in a key is chosen by the client, so a namespace cannot come from what a client says: it
// comes from where the connection comes from. A connection's namespace is the one of the first
// `--namespace-cidr` rule its source address matches, else the one of the listener it arrived on
// (`--listen HOST:PORT=NAME`); the default listener's is the unnamed default namespace.
// Inside the store a namespaced key is `NAME + "\x1f" + key`: a client key is printable ASCII, so no
// client of any namespace can write a key that reads as another namespace's (0x1f is refused as
// bad_key), and default-namespace keys are stored as they were before namespaces existed.
import { BlockList, isIPv4, isIPv6 } from "node:net";

/** The unnamed namespace: keys stored as sent, every client's when no namespace is configured. */
export const DEFAULT_NAMESPACE = "";
const SEP = "\x1f";
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Throws a RangeError naming the rule when `name` is not a namespace name. */
export function checkNamespace(name: string, where: string): string {
  if (!NAME.test(name))
    throw new RangeError(
      `${where}: namespace '${name}' must be 1-63 of A-Z a-z 0-9 . _ - (starting alphanumeric)`,
    );
  return name;
}

export function scopedKey(ns: string, key: string): string {
  return ns === DEFAULT_NAMESPACE ? key : ns + SEP + key;
}

/** The namespace a stored key belongs to (DEFAULT_NAMESPACE for an unscoped key). */
export function namespaceOfKey(stored: string): string {
  const at = stored.indexOf(SEP);
  return at < 0 ? DEFAULT_NAMESPACE : stored.slice(0, at);
}

/** The client's key when `stored` lies in `ns`, else undefined. */
export function keyIn(ns: string, stored: string): string | undefined {
  const at = stored.indexOf(SEP);
  if (ns === DEFAULT_NAMESPACE) return at < 0 ? stored : undefined;
  return at === ns.length && stored.startsWith(ns) ? stored.slice(at + 1) : undefined;
}

/** How namespaces are shown in logs and metric labels. */
export function namespaceLabel(ns: string): string {
  return ns === DEFAULT_NAMESPACE ? "default" : ns;
}

export interface ListenSpec {
  host: string;
  port: number;
  namespace: string;
}

/** Reads `[HOST:]PORT[=NAMESPACE]` (an IPv6 host in brackets: `[::1]:65432=a`). */
export function parseListen(text: string, defaultHost: string): ListenSpec {
  const eq = text.indexOf("=");
  const addr = eq < 0 ? text : text.slice(0, eq);
  const namespace = eq < 0 ? DEFAULT_NAMESPACE : checkNamespace(text.slice(eq + 1), `--listen ${text}`);
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]:|([^:[\]]+):)?(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535))
    throw new RangeError(`--listen ${text}: expected [HOST:]PORT[=NAMESPACE], e.g. 0.0.0.0:65433=team-a`);
  return { host: m[1] ?? m[2] ?? defaultHost, port, namespace };
}

export interface CidrRule {
  cidr: string;
  namespace: string;
}

/** Reads `CIDR=NAMESPACE` (`10.1.0.0/16=team-a`, `fd00::/8=team-b`; a bare address is one host). */
export function parseCidrRule(text: string): CidrRule {
  const eq = text.indexOf("=");
  if (eq < 0)
    throw new RangeError(`--namespace-cidr ${text}: expected CIDR=NAMESPACE, e.g. 10.1.0.0/16=team-a`);
  const namespace = checkNamespace(text.slice(eq + 1), `--namespace-cidr ${text}`);
  const cidr = text.slice(0, eq);
  cidrBlock(cidr); // validates
  return { cidr, namespace };
}

function cidrBlock(cidr: string): { address: string; prefix: number; family: "ipv4" | "ipv6" } {
  const [address = "", bits] = cidr.split("/");
  const family = isIPv4(address) ? "ipv4" : isIPv6(address) ? "ipv6" : undefined;
  const max = family === "ipv4" ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (
    !family ||
    !(Number.isInteger(prefix) && prefix >= 0 && prefix <= max) ||
    (bits !== undefined && !/^\d+$/.test(bits))
  )
    throw new RangeError(`--namespace-cidr: '${cidr}' is not an address or CIDR block`);
  return { address, prefix, family };
}

/**
 * Source address → namespace, first matching rule wins. One BlockList per rule: a handful of rules
 * at most, checked once per connection, never per request.
 */
export class NamespaceMap {
  private readonly rules: { list: BlockList; namespace: string }[];

  constructor(rules: readonly CidrRule[]) {
    this.rules = rules.map((r) => {
      const { address, prefix, family } = cidrBlock(r.cidr);
      const list = new BlockList();
      list.addSubnet(address, prefix, family);
      return { list, namespace: r.namespace };
    });
  }

  /** The namespace of a peer at `address`, or undefined when no rule matches. */
  lookup(address: string | undefined): string | undefined {
    if (!address || this.rules.length === 0) return undefined;
    // an IPv4 peer on a dual-stack listener shows as ::ffff:a.b.c.d; rules are written for a.b.c.d
    const v4 = address.startsWith("::ffff:") && isIPv4(address.slice(7)) ? address.slice(7) : undefined;
    for (const r of this.rules) {
      if (
        v4 !== undefined ? r.list.check(v4, "ipv4") : r.list.check(address, isIPv4(address) ? "ipv4" : "ipv6")
      )
        return r.namespace;
    }
    return undefined;
  }
}
