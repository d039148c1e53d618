// Generated text for the simulated engine: common English words that are one token each (with their
// leading space) in every family's encoder, so a streamed completion reads like text and each
// streamed delta is exactly one token.

const WORDS = `the of and to in is that for it as was with be by on not he this are or his from at which
but have an they you were her she there been one all we their has would when if so no will more out
up into do any your what some can about time them only new these may other its then than over also
first two like our after most made between many where way well down should because each just those
people how too little state good very make world still own see men work long get here both life being
under never day same another know while last might us great old year off come since against go came
right used take three states himself few house use during without again place around however home
small found thought went say part once general high upon school every does got united left number
course war until always away something fact though water less public put think almost hand enough far
took head yet government system better set told nothing night end why called didn find going look
asked later point knew city next program business give group toward young days let room president side
social present given several order national second possible rather per face among form important often
things looked early white case become large big need four within felt along children saw best church
ever least power development light thing seemed family interest want members mind country area others
done turned although open problem certain kind began different door thus help sense means whole
matter perhaps itself york times human law line above name example action company hands local show
whether five history gave today either act feet across taken past quite anything seen having death
week experience body word half really field am car words already themselves information tell
together college shall money period held keep sure probably free seems political real behind cannot
miss question air office making brought whose special major heard problems ago became federal
moment study available known result street economic boy position reason change south board individual
job areas society west close turn love community true court force full seem wife age future voice
center woman control common policy necessary following front sometimes six girl clear further land
run students provide feel party able mother music education university child effect level stood
military short town morning total figure private son subject ground value care`;

export interface OutputPool {
  ids: Int32Array;
  texts: string[];
}

/**
 * A pool this small makes answers read as a handful of words repeated: a model folder whose
 * vocabulary was trained on other text (or another language) tops it up from its own tokens.
 */
const MIN_POOL = 64;
const TOP_UP_POOL = 256;
/** a vocabulary token taken as an output word: a space and 2-12 lowercase ASCII letters */
const WORD_TOKEN = /^ [a-z]{2,12}$/;

/**
 * Keeps the words whose " word" encodes to exactly one token that decodes back to " word" alone;
 * `encodeOne` is the family's text encoder without BOS. When fewer than MIN_POOL words qualify,
 * `candidates` (a vocabulary's ids, in a fixed order) are tried the same way, so the pool stays
 * deterministic and every id in it is valid in that vocabulary.
 */
export function buildOutputPool(
  encodeOne: (text: string) => readonly number[],
  decodeOne: (id: number) => string,
  candidates?: () => Iterable<number>,
): OutputPool {
  const seenIds = new Set<number>();
  const ids: number[] = [];
  const texts: string[] = [];
  for (const word of WORDS.split(/\s+/)) {
    if (!word) continue;
    const text = " " + word;
    const enc = encodeOne(text);
    if (enc.length !== 1) continue;
    const id = enc[0]!;
    if (seenIds.has(id) || decodeOne(id) !== text) continue;
    seenIds.add(id);
    ids.push(id);
    texts.push(text);
  }
  if (ids.length < MIN_POOL && candidates) {
    for (const id of candidates()) {
      if (ids.length >= TOP_UP_POOL) break;
      if (seenIds.has(id)) continue;
      const text = decodeOne(id);
      if (!WORD_TOKEN.test(text)) continue;
      const enc = encodeOne(text);
      if (enc.length !== 1 || enc[0] !== id) continue;
      seenIds.add(id);
      ids.push(id);
      texts.push(text);
    }
  }
  return { ids: Int32Array.from(ids), texts };
}
