import { randomBytes } from "node:crypto";
import { monotonicFactory } from "ulid";

const nextUlid = monotonicFactory();

/** Resource id prefixes, as in `ord_01jd...`. */
export type IdPrefix = "ten" | "ord" | "pay" | "re" | "idk" | "evt";

/**
 * A new id: the prefix and a lower-case ULID, so ids sort by creation time (monotonic within
 * this process) and list pagination can use the id as its cursor.
 */
export function newId(prefix: IdPrefix): string {
  return `${prefix}_${nextUlid().toLowerCase()}`;
}

/** The id pattern of a prefix, for request validation. */
export function idPattern(prefix: IdPrefix): RegExp {
  return new RegExp(`^${prefix}_[0-9a-hjkmnp-tv-z]{26}$`);
}

/** A new secret API key: 32 bytes of randomness, base64url, with a recognisable prefix. */
export function newApiKey(): string {
  return `sk_${randomBytes(32).toString("base64url")}`;
}
