import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IDEMPOTENCY_KEY_HEADER_PATTERN, parseIdempotencyKey } from "./key.js";

const KEY = "0123456789abcdef";

describe("parseIdempotencyKey", () => {
  it.each([
    ["a bare token (Stripe)", KEY, KEY],
    ["a Structured Field string (IETF draft)", `"${KEY}"`, KEY],
    ["surrounding whitespace", `  ${KEY}  `, KEY],
    ["a UUID", "3f1c8e2a-6b7d-4c1e-9f0a-2d5b7c9e1a44", "3f1c8e2a-6b7d-4c1e-9f0a-2d5b7c9e1a44"],
    ["every allowed character", "AZaz09-_.:~+/=xyz", "AZaz09-_.:~+/=xyz"],
    ["255 characters", "k".repeat(255), "k".repeat(255)],
  ])("accepts %s", (_label, header, key) => {
    expect(parseIdempotencyKey(header)).toEqual({ ok: true, key });
  });

  it("reports a missing header as missing", () => {
    expect(parseIdempotencyKey(undefined)).toEqual({ ok: false, reason: "missing" });
  });

  it.each([
    ["an empty value", ""],
    ["15 characters", "k".repeat(15)],
    ["256 characters", "k".repeat(256)],
    ["a space inside", "0123456789 abcdef"],
    ["a forbidden character", `${KEY}!`],
    ["non-ASCII", `${KEY}é`],
    ["several values (joined header lines)", `${KEY}, ${KEY}`],
    ["an sf-string with parameters", `"${KEY}";a=1`],
    ["an unterminated sf-string", `"${KEY}`],
    ["an sf-string with an escape", `"${KEY}\\"x"`],
    ["an sf-string of a too-short key", '"short"'],
  ])("rejects %s as invalid", (_label, header) => {
    expect(parseIdempotencyKey(header)).toEqual({ ok: false, reason: "invalid" });
  });
});

describe("IDEMPOTENCY_KEY_HEADER_PATTERN", () => {
  const keyChar = fc.constantFrom(...'AZaz09-_.:~+/=" ,;é'.split(""));
  const headerValue = fc.oneof(
    fc.string({ unit: keyChar, minLength: 14, maxLength: 260 }),
    fc.string({ unit: keyChar, minLength: 14, maxLength: 258 }).map((key) => `"${key}"`),
  );

  it("accepts exactly the header values the middleware accepts", () => {
    fc.assert(
      // Surrounding whitespace is the one difference: HTTP strips it before either sees it.
      fc.property(
        headerValue.filter((value) => value === value.trim()),
        (value) => {
          expect(IDEMPOTENCY_KEY_HEADER_PATTERN.test(value)).toBe(parseIdempotencyKey(value).ok);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
