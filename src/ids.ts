import { randomBytes, randomFillSync } from "node:crypto";

/** Resource id prefixes, as in `ord_01jd...`. */
export type IdPrefix = "ten" | "ord" | "pay" | "re" | "idk" | "evt";

/** Crockford's base32 in lower case: the ULID alphabet, as ids spell it. */
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
const TIME_CHARS = 10;
const RANDOM_CHARS = 16;
/** 80 random bits: 16 characters of 5 bits each. */
const RANDOM_BYTES = 10;
/**
 * Randomness is drawn from the operating system this many bytes at a time (409 ids' worth):
 * one `randomFillSync` per 409 ids instead of one `getRandomValues` per character.
 */
const POOL_BYTES = 4090;

/**
 * Makes ULIDs (`01jd3k...`, 26 characters: 48 bits of milliseconds, 80 random bits) that
 * increase strictly within this process: an id made in the same millisecond as the previous one,
 * or after the clock went back, is the previous one plus 1 in its random part, as the ULID
 * specification's monotonic mode says.
 *
 * @param now the clock, in milliseconds since the epoch. Default `Date.now`.
 */
export function monotonicUlidFactory(now: () => number = Date.now): () => string {
  const pool = Buffer.allocUnsafe(POOL_BYTES);
  let poolOffset = POOL_BYTES;
  let lastTime = -1;
  let timePart = "";
  /** The random part of the last id, one 5-bit digit per character. */
  const digits = new Uint8Array(RANDOM_CHARS);

  const drawRandom = () => {
    if (poolOffset === POOL_BYTES) {
      randomFillSync(pool);
      poolOffset = 0;
    }
    // 10 bytes are 80 bits: each 5 bytes (40 bits) give 8 digits.
    for (let half = 0; half < 2; half++) {
      const at = poolOffset + half * 5;
      const high = (pool[at] as number) * 4 + ((pool[at + 1] as number) >> 6);
      const low = ((pool[at + 1] as number) & 0x3f) * 0x1000000 + pool.readUIntBE(at + 2, 3);
      const base = half * 8;
      digits[base] = high >> 5;
      digits[base + 1] = high & 0x1f;
      for (let i = 5; i >= 0; i--) digits[base + 2 + (5 - i)] = Math.floor(low / 32 ** i) & 0x1f;
    }
    poolOffset += RANDOM_BYTES;
  };

  const increment = () => {
    for (let i = RANDOM_CHARS - 1; i >= 0; i--) {
      if ((digits[i] as number) < 31) {
        digits[i] = (digits[i] as number) + 1;
        return;
      }
      digits[i] = 0;
    }
    throw new Error("ULID random part overflowed within one millisecond");
  };

  return function nextUlid() {
    const time = now();
    if (time > lastTime) {
      lastTime = time;
      timePart = encodeTime(time);
      drawRandom();
    } else {
      increment();
    }
    let random = "";
    for (let i = 0; i < RANDOM_CHARS; i++) random += ALPHABET[digits[i] as number];
    return timePart + random;
  };
}

function encodeTime(ms: number): string {
  let text = "";
  let rest = ms;
  for (let i = 0; i < TIME_CHARS; i++) {
    text = ALPHABET[rest % 32] + text;
    rest = Math.floor(rest / 32);
  }
  return text;
}

const nextUlid = monotonicUlidFactory();

/**
 * A new id: the prefix and a lower-case ULID, so ids sort by creation time (monotonic within
 * this process) and list pagination can use the id as its cursor.
 */
export function newId(prefix: IdPrefix): string {
  return `${prefix}_${nextUlid()}`;
}

/** The id pattern of a prefix, for request validation. */
export function idPattern(prefix: IdPrefix): RegExp {
  return new RegExp(`^${prefix}_[0-9a-hjkmnp-tv-z]{26}$`);
}

/** A new secret API key: 32 bytes of randomness, base64url, with a recognisable prefix. */
export function newApiKey(): string {
  return `sk_${randomBytes(32).toString("base64url")}`;
}
