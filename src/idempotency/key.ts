const KEY = String.raw`[A-Za-z0-9\-_.:~+/=]{16,255}`;

/** 16-255 characters of `A-Z a-z 0-9 - _ . : ~ + / =` (see README.md). */
export const IDEMPOTENCY_KEY_PATTERN = new RegExp(`^${KEY}$`);

/**
 * The header value as a client sends it: the key bare or as a Structured Field string. This is
 * what the OpenAPI document and the route's header schema check; `parseIdempotencyKey` accepts
 * the same values (and surrounding whitespace, which HTTP strips anyway).
 */
export const IDEMPOTENCY_KEY_HEADER_PATTERN = new RegExp(`^(?:${KEY}|"${KEY}")$`);

export type ParsedIdempotencyKey =
  | { ok: true; key: string }
  | { ok: false; reason: "missing" | "invalid" };

/**
 * Reads an `Idempotency-Key` header value. Accepts the IETF draft's form, a Structured Field
 * string (`"abc..."`), and Stripe's bare token (`abc...`) as the same key. Several header lines
 * arrive joined by commas, which the pattern rejects, so "several values" is invalid too.
 */
export function parseIdempotencyKey(header: string | undefined | null): ParsedIdempotencyKey {
  if (header === undefined || header === null) return { ok: false, reason: "missing" };
  const value = header.trim();
  // The key alphabet has no `"` or `\`, so a valid sf-string is the key between two quotes, with
  // no escapes and no parameters after the closing quote.
  const key =
    value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
  return IDEMPOTENCY_KEY_PATTERN.test(key) ? { ok: true, key } : { ok: false, reason: "invalid" };
}
