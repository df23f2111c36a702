import { describe, expect, it } from "vitest";
import { idPattern, monotonicUlidFactory, newId } from "../src/ids.js";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

function decodeTime(ulid: string): number {
  let ms = 0;
  for (const char of ulid.slice(0, 10)) ms = ms * 32 + ALPHABET.indexOf(char);
  return ms;
}

describe("ids", () => {
  it("makes well-formed, unique ids that sort in the order they were made", () => {
    const ids = Array.from({ length: 20_000 }, () => newId("ord"));
    const pattern = idPattern("ord");
    for (const id of ids) expect(id).toMatch(pattern);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
  });

  it("carries the current time in its first 10 characters", () => {
    const before = Date.now();
    const id = newId("pay").slice("pay_".length);
    const after = Date.now();
    expect(decodeTime(id)).toBeGreaterThanOrEqual(before);
    expect(decodeTime(id)).toBeLessThanOrEqual(after);
  });

  it("adds 1 to the random part within one millisecond and when the clock goes back", () => {
    let clock = 1_700_000_000_000;
    const next = monotonicUlidFactory(() => clock);
    const first = next();
    const second = next();
    clock -= 5;
    const third = next();
    expect(second.slice(0, 10)).toBe(first.slice(0, 10));
    expect(third.slice(0, 10)).toBe(first.slice(0, 10));
    const random = (ulid: string) =>
      [...ulid.slice(10)].reduce((n, char) => n * 32n + BigInt(ALPHABET.indexOf(char)), 0n);
    expect(random(second)).toBe(random(first) + 1n);
    expect(random(third)).toBe(random(first) + 2n);
    expect(decodeTime(first)).toBe(1_700_000_000_000);
  });

  it("draws fresh randomness for each new millisecond, across refills of its pool", () => {
    let clock = 1_700_000_000_000;
    const next = monotonicUlidFactory(() => clock++);
    const randomParts = Array.from({ length: 5_000 }, () => next().slice(10));
    expect(new Set(randomParts).size).toBe(randomParts.length);
    // Every character position takes all 32 values: no bit of the 80 is stuck.
    for (let position = 0; position < 16; position++) {
      const seen = new Set(randomParts.map((part) => part[position]));
      expect(seen.size, `position ${position}`).toBe(32);
    }
  });
});
