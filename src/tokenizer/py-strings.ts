// Python's string stripping as Jinja chat templates do it, for the templates written as functions
// (chat-templates.ts): `| trim`, .strip(), .lstrip(chars), .rstrip(chars).

// Python's str.isspace() set, so `| trim` and .strip() match Jinja exactly (JS trim() differs on
// \x1c-\x1f, \x85 and \ufeff). A scan from both ends, not a regex: `[ws]+$` retries at every
// whitespace position and takes quadratic time on a long run of spaces inside a message (a 40 000-space
// message held the event loop for a second).
function isPyWhitespace(c: number): boolean {
  if (c <= 0x20) return c >= 0x1c || (c >= 0x09 && c <= 0x0d);
  if (c < 0x85) return false;
  return (
    c === 0x85 ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  );
}

/** Python str.strip() with no argument (Jinja's `trim` filter) */
export function pyStrip(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isPyWhitespace(s.charCodeAt(a))) a++;
  while (b > a && isPyWhitespace(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/** Python str.rstrip() with no argument */
export function pyRstripSpace(s: string): string {
  let b = s.length;
  while (b > 0 && isPyWhitespace(s.charCodeAt(b - 1))) b--;
  return b === s.length ? s : s.slice(0, b);
}

/** Python str.lstrip(chars) / rstrip(chars) / strip(chars) for a set of single chars */
export function pyLstrip(s: string, chars: string): string {
  let i = 0;
  while (i < s.length && chars.includes(s[i]!)) i++;
  return s.slice(i);
}
export function pyRstrip(s: string, chars: string): string {
  let j = s.length;
  while (j > 0 && chars.includes(s[j - 1]!)) j--;
  return s.slice(0, j);
}
