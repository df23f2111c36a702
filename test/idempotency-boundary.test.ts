import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

/** The idempotency layer stays liftable: what it imports, and what the example imports of it. */
const LIBRARY = "src/idempotency";
const EXAMPLE = "examples/transfers";
const DECLARED = /^(node:.+|hono(\/.+)?|drizzle-orm(\/.+)?|postgres|canonicalize)$/;
const TEST_ONLY = /^(vitest|fast-check)$/;

function importsOf(file: string): string[] {
  const source = readFileSync(file, "utf8");
  return [...source.matchAll(/^(?:import|export)\s[^;"]*?from\s+"([^"]+)"/gms)].map(
    (m) => m[1] ?? "",
  );
}

const libraryFiles = readdirSync(LIBRARY).filter((name) => name.endsWith(".ts"));

describe("the idempotency layer as a library", () => {
  it.each(libraryFiles)(
    "%s imports only node:*, its declared packages and its own files",
    (name) => {
      const outside = importsOf(join(LIBRARY, name)).filter((specifier) => {
        if (specifier.startsWith("./")) return false;
        if (DECLARED.test(specifier)) return false;
        return !(name.endsWith(".test.ts") && TEST_ONLY.test(specifier));
      });
      expect(outside).toEqual([]);
    },
  );

  it("has no import cycle among its files", () => {
    const edges = new Map(
      libraryFiles.map((name) => [
        name,
        importsOf(join(LIBRARY, name))
          .filter((specifier) => specifier.startsWith("./"))
          .map((specifier) => specifier.slice(2).replace(/\.js$/, ".ts")),
      ]),
    );
    const cycles: string[] = [];
    const visit = (name: string, path: string[]) => {
      if (path.includes(name)) return void cycles.push([...path, name].join(" -> "));
      for (const next of edges.get(name) ?? []) visit(next, [...path, name]);
    };
    for (const name of edges.keys()) visit(name, []);
    expect(cycles).toEqual([]);
  });

  it("is all the example app imports of this repository, through index.ts", () => {
    const files = readdirSync(EXAMPLE).filter((n) => n.endsWith(".ts") && !n.endsWith(".test.ts"));
    const fromRepository = files.flatMap((name) =>
      importsOf(join(EXAMPLE, name)).filter((s) => s.startsWith("../")),
    );
    expect(new Set(fromRepository)).toEqual(new Set(["../../src/idempotency/index.js"]));
  });
});
