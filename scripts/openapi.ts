import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { renderOpenApiFiles } from "./openapi-files.js";

/**
 * `npm run openapi` writes openapi.yaml and the client types generated from it;
 * `npm run openapi:check` (CI) fails, naming the first differing line, when a committed file is
 * not what the code generates.
 */
const root = fileURLToPath(new URL("..", import.meta.url));
const check = process.argv.includes("--check");

let stale = 0;
for (const [path, generated] of Object.entries(await renderOpenApiFiles())) {
  const file = join(root, path);
  const committed = await readFile(file, "utf8").catch(() => undefined);
  if (committed === generated) continue;
  if (check) {
    stale++;
    process.stderr.write(
      `${path} is not what the code generates (${firstDifference(committed, generated)})\n`,
    );
  } else {
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, generated);
    process.stderr.write(`wrote ${path}\n`);
  }
}
if (stale > 0) {
  process.stderr.write("Run `npm run openapi` and commit the result.\n");
  process.exit(1);
}

function firstDifference(committed: string | undefined, generated: string): string {
  if (committed === undefined) return "missing";
  const a = committed.split("\n");
  const b = generated.split("\n");
  const line = a.findIndex((text, i) => text !== b[i]);
  const at = line === -1 ? a.length : line;
  return `line ${at + 1}: committed ${JSON.stringify(a[at] ?? "<end>")}, generated ${JSON.stringify(b[at] ?? "<end>")}`;
}
