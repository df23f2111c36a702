import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { migrateDatabase } from "../src/db/migrate.js";
import { OpenApiValidator } from "./helpers/openapi-validator.js";
import {
  citusNodes,
  createDatabase,
  dropDatabase,
  nodeUrl,
  startTestServer,
} from "./helpers/test-database.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** A migrated database of this run's own. */
    databaseUrl: string;
    /** The server's maintenance URL, for suites that need a database of their own. */
    adminUrl: string;
    databaseSource: string;
    /** In Citus mode (`CITUS_NODES`), this run's database on each node, coordinator first. */
    citusNodeUrls: string[];
    /** Where each test file reports the responses it checked against openapi.yaml. */
    openapiReportDir: string;
  }
}

/**
 * Finds a PostgreSQL (see startTestServer), creates a fresh database for this run so runs never
 * see each other's rows, migrates it, and hands its URL to the suites.
 */
export default async function setup(project: TestProject) {
  const log = (line: string) => process.stderr.write(`[test db] ${line}\n`);
  const server = await startTestServer(log);
  const name = `test_run_${Date.now()}_${process.pid}`;
  const databaseUrl = await createDatabase(server.adminUrl, name);
  const layout = await migrateDatabase(databaseUrl);
  const nodes = citusNodes() ?? [];
  if (nodes.length > 0 && (layout.kind !== "distributed" || layout.changed.length === 0)) {
    throw new Error(`Citus mode, but the migrations left the tables local (${layout.kind})`);
  }
  log(`PostgreSQL from ${server.source}; database ${name}; layout ${layout.kind}`);
  project.provide(
    "citusNodeUrls",
    nodes.map((node) => nodeUrl(node, name)),
  );
  project.provide("databaseUrl", databaseUrl);
  project.provide("adminUrl", server.adminUrl);
  project.provide("databaseSource", server.source);
  const reportDir = await mkdtemp(join(tmpdir(), "openapi-report-"));
  project.provide("openapiReportDir", reportDir);
  return async () => {
    await reportValidatedResponses(reportDir);
    await dropDatabase(server.adminUrl, name);
    await server.stop();
  };
}

/** Prints how many responses the suites checked against openapi.yaml, and what they covered. */
async function reportValidatedResponses(dir: string) {
  const files = await readdir(dir);
  const matched: string[] = [];
  for (const file of files) matched.push(...JSON.parse(await readFile(join(dir, file), "utf8")));
  await rm(dir, { recursive: true, force: true });
  const documented = OpenApiValidator.fromRepository().documentedResponses();
  const covered = new Set(matched);
  const missed = documented.filter((key) => !covered.has(key));
  process.stderr.write(
    `[openapi] ${matched.length} responses from ${files.length} test files matched openapi.yaml; ` +
      `they cover ${documented.length - missed.length} of its ${documented.length} documented ` +
      `responses${missed.length > 0 ? ` (not seen: ${missed.join(", ")})` : ""}\n`,
  );
}
