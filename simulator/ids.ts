import { randomBytes } from "node:crypto";

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Length of the random part, as in Stripe's own ids (`pi_3Nx...`, 24 characters). */
const RANDOM_PART_LENGTH = 24;

/** A random base62 string of `length` characters. */
export function randomToken(length: number): string {
  const bytes = randomBytes(length);
  let token = "";
  for (const byte of bytes) {
    // 62 does not divide 256; the slight bias is irrelevant for test identifiers.
    token += ALPHABET[byte % ALPHABET.length];
  }
  return token;
}

/**
 * A fresh Stripe-style identifier such as `pi_...`, `ch_...`, `re_...`, `evt_...`, `req_...`.
 *
 * @example newId("pi") // "pi_3kTz9X..."
 */
export function newId(prefix: string): string {
  return `${prefix}_${randomToken(RANDOM_PART_LENGTH)}`;
}

/** The current time in whole Unix seconds, the unit of every Stripe `created` field. */
export function unixNow(): number {
  return Math.floor(Date.now() / 1000);
}
