import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, inject } from "vitest";
import { type Database, type DatabaseHandle, openDatabase } from "../../src/db/client.js";
import { migrateDatabase } from "../../src/db/migrate.js";
import { createDatabase, dropDatabase } from "./test-database.js";

export interface PrivateDatabase {
  url: string;
  handle: DatabaseHandle;
  /** Another pool on the same database, as a second process would have. */
  open(max?: number): DatabaseHandle;
}

/**
 * A migrated database of the suite's own, dropped after it. For suites whose subject works
 * across tenants (cleanup deletes every tenant's expired records), so they never touch the
 * run's shared database where other suites' records live.
 */
export function usePrivateDatabase(label: string, max = 10): PrivateDatabase {
  const name = `test_${label}_${randomUUID().slice(0, 8)}`;
  const pools: DatabaseHandle[] = [];
  const state = {
    // The app's own application name, which `holdTenantRow(...).blocked` looks for.
    open(poolMax = max) {
      const handle = openDatabase(state.url, { max: poolMax });
      pools.push(handle);
      return handle;
    },
  } as PrivateDatabase;
  beforeAll(async () => {
    state.url = await createDatabase(inject("adminUrl"), name);
    await migrateDatabase(state.url);
    state.handle = state.open();
  });
  afterAll(async () => {
    await Promise.all(pools.map((pool) => pool.close()));
    await dropDatabase(inject("adminUrl"), name);
  });
  return state;
}

export interface RecordSpec {
  count?: number;
  /** Seconds from now to `expires_at`; negative for expired records. */
  expiresInSeconds: number;
  recoveryPoint?: string;
  /** Seconds from now to `locked_until`; null (the default) for no lease. */
  leaseSeconds?: number | null;
  keyPrefix?: string;
}

/**
 * Writes idempotency records straight into the table, the way a request at any stage would
 * have left them (a finished answer, a multi-phase request holding its lease, one stopped at an
 * intermediate recovery point), and returns their keys.
 */
export async function insertRecords(
  db: Database,
  tenantId: string,
  spec: RecordSpec,
): Promise<string[]> {
  const prefix = spec.keyPrefix ?? `rec-${randomUUID()}`;
  const rows = await db.execute<{ key: string }>(sql`
    INSERT INTO idempotency_keys (tenant_id, key, record_id, fingerprint, method, path,
      recovery_point, locked_until, response_status, response_headers, response_body,
      created_at, expires_at)
    SELECT ${tenantId}, ${prefix} || '-' || g, 'idk_' || g, repeat('0', 64), 'POST', '/v1/orders',
      ${spec.recoveryPoint ?? "finished"},
      CASE WHEN ${spec.leaseSeconds ?? null}::float8 IS NULL THEN NULL
        ELSE now() + ${spec.leaseSeconds ?? null}::float8 * interval '1 second' END,
      201, '{"content-type":"application/json"}'::jsonb, '{}',
      now() - interval '1 day', now() + ${spec.expiresInSeconds}::float8 * interval '1 second'
    FROM generate_series(1, ${spec.count ?? 1}::int) AS g
    RETURNING key`);
  return rows.map((row) => row.key);
}

/** The keys of a tenant's records that still exist. */
export async function remainingKeys(db: Database, tenantId: string): Promise<string[]> {
  const rows = await db.execute<{ key: string }>(
    sql`SELECT key FROM idempotency_keys WHERE tenant_id = ${tenantId} ORDER BY key`,
  );
  return rows.map((row) => row.key);
}

/** A tenant's records past `expires_at`, deletable or not. */
export async function expiredCount(db: Database, tenantId: string): Promise<number> {
  const [row] = await db.execute<{ n: number }>(sql`
    SELECT count(*)::int AS n FROM idempotency_keys
    WHERE tenant_id = ${tenantId} AND expires_at <= now()`);
  return row?.n ?? 0;
}
