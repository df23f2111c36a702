import { execFile } from "node:child_process";
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { REPO_ROOT } from "./helpers/server-process.js";

/**
 * The client as a package: what `npm run client:build` makes is importable by the package's
 * own name through its `exports` map and uses no Node.js module; the READMEs show the example
 * that `npm run typecheck` compiles; openapi.yaml declares the replay header every client reads.
 */
const run = promisify(execFile);
let packageDir: string;

beforeAll(async () => {
  packageDir = await mkdtemp(join(tmpdir(), "client-package-"));
  await copyFile(join(REPO_ROOT, "client/package.json"), join(packageDir, "package.json"));
  await run(
    join(REPO_ROOT, "node_modules/.bin/tsc"),
    ["-p", join(REPO_ROOT, "client/tsconfig.json"), "--outDir", join(packageDir, "dist")],
    { cwd: REPO_ROOT },
  );
});
afterAll(async () => {
  await rm(packageDir, { recursive: true, force: true });
});

describe("the built client package", () => {
  it("resolves by its name through the exports map, with types beside the code", async () => {
    // A package may import itself by name: this goes through `exports`, as a dependent's would.
    await writeFile(
      join(packageDir, "probe.mjs"),
      'const m = await import("@idempotent-payments/client");\n' +
        "console.log(JSON.stringify(Object.keys(m).sort()));\n",
    );
    const { stdout } = await run(process.execPath, ["probe.mjs"], { cwd: packageDir });
    expect(JSON.parse(stdout)).toEqual([
      "ApiClientError",
      "ApiConnectionError",
      "ApiProblem",
      "ApiResponseError",
      "DEFAULT_INITIAL_RETRY_DELAY_MS",
      "DEFAULT_MAX_ELAPSED_MS",
      "DEFAULT_MAX_RETRIES",
      "DEFAULT_MAX_RETRY_DELAY_MS",
      "DEFAULT_TIMEOUT_MS",
      "createClient",
      "isApiProblem",
      "newIdempotencyKey",
    ]);
    const manifest = JSON.parse(await readFile(join(packageDir, "package.json"), "utf8"));
    const entry = manifest.exports["."];
    await expect(readFile(join(packageDir, entry.types), "utf8")).resolves.toContain(
      "createClient",
    );
    await expect(readFile(join(packageDir, entry.import), "utf8")).resolves.toContain(
      "createClient",
    );
  });

  it("imports nothing but its own files, so it runs in browsers too", async () => {
    const files = (await readdir(join(packageDir, "dist"), { recursive: true })).filter((f) =>
      f.endsWith(".js"),
    );
    expect(files.length).toBeGreaterThan(4);
    for (const file of files) {
      const code = await readFile(join(packageDir, "dist", file), "utf8");
      const specifiers = [...code.matchAll(/\bfrom\s+"([^"]+)"|import\("([^"]+)"\)/g)].map(
        (m) => m[1] ?? m[2],
      );
      expect(
        specifiers.every((s) => s?.startsWith("./")),
        `${file}: ${specifiers}`,
      ).toBe(true);
    }
  });
});

describe("the READMEs", () => {
  it("show client/examples/quickstart.ts, which typecheck compiles, word for word", async () => {
    const example = (
      await readFile(join(REPO_ROOT, "client/examples/quickstart.ts"), "utf8")
    ).replace('"../src/index.js"', '"@idempotent-payments/client"');
    for (const readme of ["README.md", "client/README.md"]) {
      const text = await readFile(join(REPO_ROOT, readme), "utf8");
      const blocks = [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
      expect(blocks, readme).toContain(example);
    }
  });
});

describe("openapi.yaml", () => {
  it("declares Idempotent-Replayed on every 2xx of every operation that takes an Idempotency-Key", async () => {
    const document = parse(await readFile(join(REPO_ROOT, "openapi.yaml"), "utf8"));
    const checked: string[] = [];
    for (const [path, item] of Object.entries<Record<string, JsonOperation>>(document.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        const keyed = (operation.parameters ?? []).some((p) => p.$ref?.endsWith("/IdempotencyKey"));
        if (!keyed) continue;
        for (const [status, response] of Object.entries(operation.responses ?? {})) {
          if (!status.startsWith("2")) continue;
          expect(response.headers?.["Idempotent-Replayed"], `${method} ${path} ${status}`).toEqual({
            $ref: "#/components/headers/IdempotentReplayed",
          });
          checked.push(`${method.toUpperCase()} ${path} ${status}`);
        }
      }
    }
    expect(checked.sort()).toEqual([
      "POST /v1/orders 201",
      "POST /v1/orders/{id}/cancel 200",
      "POST /v1/payments 201",
      "POST /v1/refunds 201",
    ]);
  });
});

interface JsonOperation {
  parameters?: { $ref?: string }[];
  responses?: Record<string, { headers?: Record<string, unknown> }>;
}
