import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CLIENT_TYPES_PATH, OPENAPI_YAML_PATH, renderClientTypes } from "./openapi-files.js";

/**
 * `npm run client:generate` writes the client package's types from the committed openapi.yaml;
 * `npm run client:check` (CI) regenerates them and fails, naming the first differing line, when
 * the committed file is not what openapi.yaml generates. The client's request, response and
 * error-code types all derive from this file, so they cannot drift from the document.
 */
const root = fileURLToPath(new URL("..", import.meta.url));
const TYPES_PATH = CLIENT_TYPES_PATH;

const yaml = await readFile(join(root, OPENAPI_YAML_PATH), "utf8");
const generated = await renderClientTypes(yaml);
const file = join(root, TYPES_PATH);
const committed = await readFile(file, "utf8").catch(() => undefined);

if (process.argv.includes("--check")) {
  if (committed !== generated) {
    process.stderr.write(
      `${TYPES_PATH} is not what ${OPENAPI_YAML_PATH} generates (${firstDifference(committed, generated)})\n` +
        "Run `npm run client:generate` and commit the result.\n",
    );
    process.exit(1);
  }
} else if (committed !== generated) {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, generated);
  process.stderr.write(`wrote ${TYPES_PATH}\n`);
}

function firstDifference(committed: string | undefined, generated: string): string {
  if (committed === undefined) return "missing";
  const a = committed.split("\n");
  const b = generated.split("\n");
  const line = a.findIndex((text, i) => text !== b[i]);
  const at = line === -1 ? a.length : line;
  return `line ${at + 1}: committed ${JSON.stringify(a[at] ?? "<end>")}, generated ${JSON.stringify(b[at] ?? "<end>")}`;
}
