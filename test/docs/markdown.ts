// The slice of Markdown the link test reads: the links a page makes and the anchors its headings get,
// slugged as GitHub slugs them (github-slugger: lower case, punctuation dropped, spaces to hyphens,
// repeats numbered), with code fences and inline code left out as GitHub leaves them out.

export interface MarkdownLink {
  target: string;
  /** 1-based line of the page the link is on */
  line: number;
}

/** the page with fenced code blocks blanked (lines kept, so line numbers still point right) */
function withoutFences(text: string): string[] {
  const lines = text.split("\n");
  let fence: string | null = null;
  return lines.map((line) => {
    const opener = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
    if (fence === null) {
      if (opener) {
        fence = opener[1]!;
        return "";
      }
      return line;
    }
    if (
      opener &&
      opener[1]![0] === fence[0] &&
      opener[1]!.length >= fence.length &&
      line.trim() === opener[1]
    ) {
      fence = null;
    }
    return "";
  });
}

const INLINE_CODE = /(`+)[\s\S]*?\1/g;
const INLINE_LINK =
  /!?\[((?:[^[\]]|\[[^\]]*\])*)\]\(\s*(?:<([^>]*)>|([^)\s]+))(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g;
const REFERENCE_DEFINITION = /^\s{0,3}\[[^\]]+\]:\s*<?([^>\s]+)>?/;
const HTML_LINK = /<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*"([^"]*)"/gi;

/** every link, image and reference definition outside code */
export function markdownLinks(text: string): MarkdownLink[] {
  const out: MarkdownLink[] = [];
  withoutFences(text).forEach((raw, index) => {
    const line = raw.replace(INLINE_CODE, (m) => " ".repeat(m.length));
    const definition = REFERENCE_DEFINITION.exec(line);
    if (definition) out.push({ target: definition[1]!, line: index + 1 });
    for (const m of line.matchAll(INLINE_LINK)) out.push({ target: (m[2] ?? m[3])!, line: index + 1 });
    for (const m of line.matchAll(HTML_LINK)) out.push({ target: m[1]!, line: index + 1 });
  });
  return out;
}

/** a heading's text as GitHub renders it: inline markup gone, the words kept */
function renderedText(heading: string): string {
  return heading
    .replace(/<[^>]+>/g, "")
    .replace(/!?\[((?:[^[\]]|\[[^\]]*\])*)\]\([^)]*\)/g, "$1")
    .replace(/(`+)([\s\S]*?)\1/g, "$2")
    .replace(/(\*\*|__)(.+?)\1/g, "$2")
    .replace(/(^|\W)[*_](\S.*?)[*_](?=\W|$)/g, "$1$2");
}

/** GitHub's anchor for a heading's text, before repeats are numbered */
export function githubSlug(heading: string): string {
  return renderedText(heading)
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
    .replace(/ /g, "-");
}

/** every anchor a page offers: its headings' slugs (repeats numbered -1, -2 ...) and HTML ids */
export function headingAnchors(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const lines = withoutFences(text);
  lines.forEach((line, index) => {
    for (const m of line.matchAll(/<a\b[^>]*?\b(?:id|name)\s*=\s*"([^"]+)"/gi))
      anchors.add(m[1]!.toLowerCase());
    let heading: string | null = null;
    const atx = /^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line);
    if (atx) heading = atx[1]!;
    else if (/^\s{0,3}(=+|-+)\s*$/.test(line) && index > 0 && lines[index - 1]!.trim() !== "") {
      // a setext heading underlines the paragraph line above it (a lone --- after a blank is a rule)
      const above = lines[index - 1]!;
      if (!/^\s{0,3}([-*_]\s*){3,}$/.test(above) && !/^\s*\|/.test(above) && /=/.test(line)) heading = above;
    }
    if (heading === null) return;
    const slug = githubSlug(heading);
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  });
  return anchors;
}

/** the project's own paths a page names in inline code (`src/...`, `test/...`), each with its line */
export function namedRepoPaths(text: string): MarkdownLink[] {
  const out: MarkdownLink[] = [];
  withoutFences(text).forEach((line, index) => {
    for (const m of line.matchAll(/`((?:src|test|bench|scripts|deploy|examples|profiles)\/[\w./-]+)`/g)) {
      out.push({ target: m[1]!, line: index + 1 });
    }
  });
  return out;
}
