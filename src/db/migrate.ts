import { fileURLToPath } from "node:url";
import { drizzle } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { applyCitusLayout, type CitusLayout, undistributedTenantTables } from "./citus.js";
import { ADVISORY_LOCK_NAMESPACE, JOB_LOCKS } from "./locks.js";

const MIGRATIONS_FOLDER = fileURLToPath(new URL("../../drizzle", import.meta.url));

/**
 * Applies the migrations in `drizzle/`. drizzle's migrator takes no lock of its own, so two
 * processes migrating a fresh database at once would both try to create the tables; a session
 * advisory lock on a one-connection client serialises them, and the second finds nothing to do.
 *
 * On a Citus coordinator with workers the migrations are followed by the distributed layout
 * (see `applyCitusLayout`), checked before returning: a tenant table left local fails here.
 * Run it against the coordinator; the lock is per node.
 */
export async function migrateDatabase(url: string): Promise<CitusLayout> {
  const client = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    await client`SELECT pg_advisory_lock(${ADVISORY_LOCK_NAMESPACE}, ${JOB_LOCKS.migrate})`;
    await migrate(drizzle(client), { migrationsFolder: MIGRATIONS_FOLDER });
    const layout = await applyCitusLayout(client);
    if (layout.kind === "distributed") {
      const local = await undistributedTenantTables(client);
      if (local.length > 0) {
        throw new Error(`tenant tables not distributed by tenant_id: ${local.join(", ")}`);
      }
    }
    return layout;
  } finally {
    await client.end({ timeout: 5 });
  }
}
