import { isDeepStrictEqual } from "node:util";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { requestFingerprint } from "./fingerprint.js";

/** Re-serialises a JSON value with its object keys shuffled and random whitespace. */
function reorderedJson(value: unknown, seed: number): string {
  let state = seed;
  const random = () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
  const space = () => [" ", "\n", "\t", ""][Math.floor(random() * 4)];
  const write = (v: unknown): string => {
    if (Array.isArray(v)) return `[${space()}${v.map(write).join(`,${space()}`)}]`;
    if (v !== null && typeof v === "object") {
      const entries = Object.entries(v).sort(() => random() - 0.5);
      return `{${space()}${entries.map(([k, x]) => `${JSON.stringify(k)}${space()}:${space()}${write(x)}`).join(`,${space()}`)}${space()}}`;
    }
    return JSON.stringify(v);
  };
  return write(value);
}

const jsonValue = fc.jsonValue({ maxDepth: 4 });

describe("requestFingerprint", () => {
  it("never depends on key order or whitespace", () => {
    fc.assert(
      fc.property(jsonValue, fc.integer({ min: 1, max: 2 ** 30 }), (value, seed) => {
        const text = reorderedJson(value, seed);
        expect(requestFingerprint("POST", "/v1/orders", JSON.parse(text))).toBe(
          requestFingerprint("POST", "/v1/orders", value),
        );
      }),
      { numRuns: 500 },
    );
  });

  it("always changes when any value in the body changes", () => {
    const record = fc.dictionary(
      fc.string({ minLength: 1, maxLength: 8 }),
      fc.jsonValue({ maxDepth: 2 }),
      {
        minKeys: 1,
      },
    );
    fc.assert(
      fc.property(record, fc.nat(), fc.jsonValue({ maxDepth: 2 }), (body, index, replacement) => {
        const keys = Object.keys(body);
        const key = keys[index % keys.length] as string;
        // Differ as JSON values: key order aside, and -0 is 0 once serialised.
        const asJson = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;
        fc.pre(!isDeepStrictEqual(asJson(body[key]), asJson(replacement)));
        const changed = { ...body, [key]: replacement };
        expect(requestFingerprint("POST", "/v1/orders", changed)).not.toBe(
          requestFingerprint("POST", "/v1/orders", body),
        );
      }),
      { numRuns: 500 },
    );
  });

  it("changes with the method, the path, or a body's presence", () => {
    const base = requestFingerprint("POST", "/v1/orders", { a: 1 });
    expect(requestFingerprint("PUT", "/v1/orders", { a: 1 })).not.toBe(base);
    expect(requestFingerprint("POST", "/v1/orders/x", { a: 1 })).not.toBe(base);
    expect(requestFingerprint("POST", "/v1/orders", undefined)).not.toBe(
      requestFingerprint("POST", "/v1/orders", {}),
    );
    expect(requestFingerprint("post", "/v1/orders", { a: 1 })).toBe(base);
  });

  it("tells numbers apart from their string forms and distinguishes array order", () => {
    expect(requestFingerprint("POST", "/p", { a: 1 })).not.toBe(
      requestFingerprint("POST", "/p", { a: "1" }),
    );
    expect(requestFingerprint("POST", "/p", [1, 2])).not.toBe(
      requestFingerprint("POST", "/p", [2, 1]),
    );
  });
});
