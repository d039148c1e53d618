// Strings that match a regular expression, for structured outputs (`structured_outputs.regex`,
// `guided_regex`) and JSON-schema `pattern`s. A real vLLM constrains the model with a grammar built
// from the regex (xgrammar); the sim has no model to constrain, so it writes one matching string
// itself, drawn with the request's seeded PRNG so the same request gives the same answer.
//
// The syntax is what xgrammar accepts: literals, `.`, classes (`[a-z]`, `[^...]`, `\d\w\s` and their
// negations), groups (capturing, `(?:...)`, named), alternation, and the quantifiers `? * + {n}
// {n,} {n,m}` (lazy and possessive suffixes read the same). Anchors and `\b` match the empty string.
// Backreferences and lookaround have no grammar form: xgrammar refuses them, and so does this parser
// (RegexUnsupported, which the caller turns into vLLM's 400).
import { UnsupportedError } from "../../errors/index.js";

export class RegexUnsupported extends UnsupportedError {
  override name = "RegexUnsupported";
}

type Node =
  | { t: "alt"; options: Node[] }
  | { t: "seq"; items: Node[] }
  | { t: "rep"; node: Node; min: number; max: number }
  | { t: "set"; ranges: Array<[number, number]>; negated: boolean }
  | { t: "lit"; cp: number }
  | { t: "empty" };

/** The longest string a generated match may reach; a pattern asking for more is cut there. */
const MAX_CHARS = 4096;
/** How far past its minimum an open-ended quantifier (`*`, `+`, `{n,}`) repeats at most. */
const OPEN_EXTRA = 3;
/** How many repetitions past the minimum a bounded quantifier draws from at most. */
const BOUNDED_EXTRA = 5;

const DIGIT: Array<[number, number]> = [[0x30, 0x39]];
const WORD: Array<[number, number]> = [
  [0x61, 0x7a],
  [0x41, 0x5a],
  [0x30, 0x39],
  [0x5f, 0x5f],
];
const SPACE: Array<[number, number]> = [
  [0x20, 0x20],
  [0x09, 0x0d],
];
/** `.` and negated classes draw from printable ASCII: what a model writes, and safe in JSON */
const PRINTABLE: Array<[number, number]> = [[0x20, 0x7e]];

class Parser {
  private i = 0;
  constructor(private readonly src: string) {}

  parse(): Node {
    const node = this.alt();
    if (this.i < this.src.length) throw new RegexUnsupported(`unbalanced ')' at position ${this.i}`);
    return node;
  }

  private peek(): string | undefined {
    return this.src[this.i];
  }

  private alt(): Node {
    const options = [this.seq()];
    while (this.peek() === "|") {
      this.i++;
      options.push(this.seq());
    }
    return options.length === 1 ? options[0]! : { t: "alt", options };
  }

  private seq(): Node {
    const items: Node[] = [];
    while (this.i < this.src.length && this.peek() !== "|" && this.peek() !== ")") {
      let atom = this.atom();
      atom = this.quantified(atom);
      items.push(atom);
    }
    return items.length === 1 ? items[0]! : { t: "seq", items };
  }

  private quantified(atom: Node): Node {
    for (;;) {
      const c = this.peek();
      let min: number;
      let max: number;
      if (c === "*") [min, max] = [0, Infinity];
      else if (c === "+") [min, max] = [1, Infinity];
      else if (c === "?") [min, max] = [0, 1];
      else if (c === "{") {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.i));
        if (!m) return atom; // a literal '{', as Python's re reads it
        min = Number(m[1]);
        max = m[2] === undefined ? min : m[3] === "" ? Infinity : Number(m[3]);
        if (max < min) throw new RegexUnsupported(`bad repetition {${m[1]},${m[3]}}`);
        this.i += m[0].length - 1;
      } else return atom;
      this.i++;
      // lazy and possessive forms match the same strings
      if (this.peek() === "?" || this.peek() === "+") this.i++;
      atom = { t: "rep", node: atom, min, max };
    }
  }

  private atom(): Node {
    const c = this.src[this.i++]!;
    switch (c) {
      case "(":
        return this.group();
      case "[":
        return this.set();
      case ".":
        return { t: "set", ranges: PRINTABLE, negated: false };
      case "^":
      case "$":
        return { t: "empty" };
      case "\\":
        return this.escape(false) as Node;
      case "*":
      case "+":
      case "?":
        throw new RegexUnsupported(`nothing to repeat at position ${this.i - 1}`);
      default:
        return { t: "lit", cp: this.codePointBefore(c) };
    }
  }

  /** the code point starting with `c` (already consumed), taking its low surrogate too */
  private codePointBefore(c: string): number {
    const hi = c.charCodeAt(0);
    if (hi >= 0xd800 && hi < 0xdc00 && this.i < this.src.length) {
      const lo = this.src.charCodeAt(this.i);
      if (lo >= 0xdc00 && lo < 0xe000) {
        this.i++;
        return (hi - 0xd800) * 0x400 + (lo - 0xdc00) + 0x10000;
      }
    }
    return hi;
  }

  private group(): Node {
    if (this.peek() === "?") {
      const rest = this.src.slice(this.i + 1);
      if (rest.startsWith(":")) this.i += 2;
      else if (/^P?<[A-Za-z_][A-Za-z0-9_]*>/.test(rest)) this.i = this.src.indexOf(">", this.i) + 1;
      else if (/^(=|!|<=|<!)/.test(rest))
        throw new RegexUnsupported("lookaround assertions are not supported");
      else throw new RegexUnsupported(`unsupported group syntax '(?${rest.slice(0, 2)}'`);
    }
    const inner = this.alt();
    if (this.peek() !== ")") throw new RegexUnsupported("missing ')'");
    this.i++;
    return inner;
  }

  private set(): Node {
    let negated = false;
    if (this.peek() === "^") {
      negated = true;
      this.i++;
    }
    const ranges: Array<[number, number]> = [];
    let first = true;
    for (;;) {
      if (this.i >= this.src.length) throw new RegexUnsupported("unterminated character class");
      const c = this.src[this.i++]!;
      if (c === "]" && !first) break;
      first = false;
      let lo: number;
      if (c === "\\") {
        const e = this.escape(true);
        if (Array.isArray(e)) {
          ranges.push(...e);
          continue;
        }
        if (e.t === "set") {
          ranges.push(...(e.negated ? complement(e.ranges) : e.ranges));
          continue;
        }
        if (e.t !== "lit") continue;
        lo = e.cp;
      } else lo = this.codePointBefore(c);
      if (this.peek() === "-" && this.src[this.i + 1] !== "]" && this.i + 1 < this.src.length) {
        this.i++;
        const d = this.src[this.i++]!;
        let hi: number;
        if (d === "\\") {
          const e = this.escape(true);
          if (Array.isArray(e) || e.t !== "lit") throw new RegexUnsupported("bad character range");
          hi = e.cp;
        } else hi = this.codePointBefore(d);
        if (hi < lo) throw new RegexUnsupported("bad character range");
        ranges.push([lo, hi]);
      } else ranges.push([lo, lo]);
    }
    return { t: "set", ranges, negated };
  }

  /** after a backslash: a class's ranges (inside `[...]`), a node, or a literal */
  private escape(inClass: boolean): Node | Array<[number, number]> {
    const c = this.src[this.i++];
    if (c === undefined) throw new RegexUnsupported("trailing backslash");
    const cls = (ranges: Array<[number, number]>, negated: boolean): Node | Array<[number, number]> =>
      inClass && !negated ? ranges : { t: "set", ranges, negated };
    switch (c) {
      case "d":
        return cls(DIGIT, false);
      case "D":
        return cls(DIGIT, true);
      case "w":
        return cls(WORD, false);
      case "W":
        return cls(WORD, true);
      case "s":
        return cls(SPACE, false);
      case "S":
        return cls(SPACE, true);
      case "b":
        // a word boundary outside a class, a backspace inside one
        return inClass ? { t: "lit", cp: 8 } : { t: "empty" };
      case "B":
      case "A":
      case "Z":
      case "z":
        return { t: "empty" };
      case "n":
        return { t: "lit", cp: 10 };
      case "t":
        return { t: "lit", cp: 9 };
      case "r":
        return { t: "lit", cp: 13 };
      case "f":
        return { t: "lit", cp: 12 };
      case "v":
        return { t: "lit", cp: 11 };
      case "0":
        return { t: "lit", cp: 0 };
      case "x":
      case "u": {
        const len = c === "x" ? 2 : 4;
        const hex = this.src.slice(this.i, this.i + len);
        if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(hex))
          throw new RegexUnsupported(`bad escape \\${c}${hex}`);
        this.i += len;
        return { t: "lit", cp: parseInt(hex, 16) };
      }
      case "k":
        throw new RegexUnsupported("backreferences are not supported");
      default:
        if (c >= "1" && c <= "9") throw new RegexUnsupported("backreferences are not supported");
        return { t: "lit", cp: this.codePointBefore(c) };
    }
  }
}

/** Parses a pattern (throws RegexUnsupported for what has no grammar form). */
export function parseRegex(pattern: string): RegexPlan {
  return new RegexPlan(new Parser(pattern).parse());
}

/** A parsed pattern: draws matching strings. */
export class RegexPlan {
  constructor(private readonly root: Node) {}

  /** One string the whole pattern matches, drawn with `rand` (uniform [0, 1)). */
  sample(rand: () => number): string {
    const out: number[] = [];
    this.walk(this.root, rand, out);
    let s = "";
    for (const cp of out) s += String.fromCodePoint(cp);
    return s;
  }

  private walk(n: Node, rand: () => number, out: number[]): void {
    if (out.length >= MAX_CHARS) return;
    switch (n.t) {
      case "empty":
        return;
      case "lit":
        out.push(n.cp);
        return;
      case "seq":
        for (const item of n.items) this.walk(item, rand, out);
        return;
      case "alt":
        this.walk(n.options[Math.floor(rand() * n.options.length)]!, rand, out);
        return;
      case "rep": {
        const extra = n.max === Infinity ? OPEN_EXTRA : Math.min(n.max - n.min, BOUNDED_EXTRA);
        const count = n.min + Math.floor(rand() * (extra + 1));
        for (let k = 0; k < count && out.length < MAX_CHARS; k++) this.walk(n.node, rand, out);
        return;
      }
      case "set":
        out.push(pickFrom(n.negated ? complement(n.ranges) : n.ranges, rand));
        return;
    }
  }
}

function pickFrom(ranges: Array<[number, number]>, rand: () => number): number {
  let total = 0;
  for (const [lo, hi] of ranges) total += hi - lo + 1;
  if (total === 0) throw new RegexUnsupported("a character class that matches nothing");
  let k = Math.floor(rand() * total);
  for (const [lo, hi] of ranges) {
    const size = hi - lo + 1;
    if (k < size) return lo + k;
    k -= size;
  }
  return ranges[0]![0];
}

/** Printable ASCII outside `ranges` (a negated class draws from what a model would write). */
function complement(ranges: Array<[number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let start = -1;
  for (let cp = 0x20; cp <= 0x7e; cp++) {
    const inside = ranges.some(([lo, hi]) => cp >= lo && cp <= hi);
    if (!inside && start < 0) start = cp;
    if (inside && start >= 0) {
      out.push([start, cp - 1]);
      start = -1;
    }
  }
  if (start >= 0) out.push([start, 0x7e]);
  // nothing printable left: a non-ASCII letter outside the ranges
  if (out.length === 0) {
    for (let cp = 0xc0; cp < 0x250; cp++)
      if (!ranges.some(([lo, hi]) => cp >= lo && cp <= hi)) return [[cp, cp]];
  }
  return out;
}
