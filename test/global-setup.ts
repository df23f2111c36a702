import type { TestProject } from "vitest/node";
import { migrateDatabase } from "../src/db/migrate.js";
import { createDatabase, dropDatabase, startTestServer } from "./helpers/test-database.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** A migrated database of this run's own. */
    databaseUrl: string;
    /** The server's maintenance URL, for suites that need a database of their own. */
    adminUrl: string;
    databaseSource: string;
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
  await migrateDatabase(databaseUrl);
  log(`PostgreSQL from ${server.source}; database ${name}`);
  project.provide("databaseUrl", databaseUrl);
  project.provide("adminUrl", server.adminUrl);
  project.provide("databaseSource", server.source);
  return async () => {
    await dropDatabase(server.adminUrl, name);
    await server.stop();
  };
}
