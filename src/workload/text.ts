// Prompt text of a wanted length in tokens. The words below are each exactly one token (with the
// leading space) in the Llama 3 and the OpenAI cl100k/o200k tokenizers, so N words are close to N
// tokens before calibration; calibrate.ts then measures the endpoint's own ratio with /tokenize.
import type { Rng } from "../random/rng.js";

export const WORDS: readonly string[] = `
the of and to in is was for on that with as by at from his it an were are which this be or has had
first one their its new after who they two her she been other when there all during into school
time may years more most only over city some world would where later up such used many can state
about national out known university united then made village county also under area american states
year part since well born three both film people team these between great being those game south
north group however second while including family several age history war high water series
government early public called within population four day music season life through power album
back led house work band form each way league until town old land own country small club line
company end following name place based members john late last main even king number final body top
left district set found down much did river major began west same political former long held
general along station east around took still term period must large order became play local often
won party side field home force march among law center church radio army open five single lake road
point black white light office report study forest paper month model story money short level space
free stone building class green matter market price value woman child plan case mind star rock fire
bridge garden horse animal plant summer winter spring morning evening night window door table chair
letter voice sound color friend doctor teacher student parent father mother brother sister island
ocean mountain valley desert coast harbor castle tower temple palace street avenue square corner
border journey travel question answer problem reason result effect energy system method theory
science nature culture society economy industry product service design program network data signal
engine machine vehicle train plane ship boat car truck metal glass wood cotton silk gold silver
iron copper salt sugar bread cheese apple orange lemon grape tea coffee milk honey rain snow wind
storm cloud sun moon planet earth sky shadow dream memory idea poem song dance sport race match
goal score rule court judge police crime prison guard soldier battle enemy peace treaty leader
member council meeting committee budget tax bank trade cost sale store shop brand label item list
page book chapter word note card gift prize medal award honor
`
  .trim()
  .split(/\s+/);

/**
 * Tokens per word for the endpoint's tokenizer; 1 for the word list above with common tokenizers.
 * Text builders take it so that the caller's calibration, not a global, decides lengths.
 */
export interface TextShape {
  tokensPerWord: number;
}

export const DEFAULT_SHAPE: TextShape = { tokensPerWord: 1 };

export function wordsFor(tokens: number, shape: TextShape): number {
  if (tokens <= 0) return 0;
  return Math.max(1, Math.round(tokens / shape.tokensPerWord));
}

/** Random words making about `tokens` tokens. */
export function randomText(tokens: number, rng: Rng, shape: TextShape = DEFAULT_SHAPE): string {
  const n = wordsFor(tokens, shape);
  const out: string[] = new Array<string>(n);
  for (let i = 0; i < n; i++) out[i] = WORDS[Math.floor(rng.next() * WORDS.length)]!;
  return out.join(" ");
}
