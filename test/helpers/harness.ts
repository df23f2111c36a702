import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { count, eq, type SQL, sql } from "drizzle-orm";
import { pino } from "pino";
import { afterAll, expect, inject } from "vitest";
import { type AppDeps, createApp } from "../../src/app.js";
import { type Database, type DatabaseHandle, openDatabase } from "../../src/db/client.js";
import { idempotencyKeys, orderItems, orders } from "../../src/db/schema.js";
import { ERRORS, type ErrorCode, PROBLEM_TYPE_BASE } from "../../src/http/errors.js";
import { stripeProvider } from "../../src/provider/stripe-provider.js";
import { createTenant } from "../../src/tenants/tenants.queries.js";
import { OpenApiValidator } from "./openapi-validator.js";

/**
 * A pool on this run's database, closed after the suite. Its connections carry an application
 * name of their own, so a suite can tell its own lock waits from other suites'.
 */
export function useDatabase(max = 20): DatabaseHandle & { applicationName: string } {
  const applicationName = `vitest-${randomUUID().slice(0, 8)}`;
  const handle = openDatabase(inject("databaseUrl"), { max, applicationName });
  afterAll(() => handle.close());
  return { ...handle, applicationName };
}

/** A tenant of the test's own, so suites sharing the database never see each other's rows. */
export async function createTestTenant(db: Database, label = "test") {
  return createTenant(db, { name: `${label}-${randomUUID().slice(0, 8)}` });
}

/** A fresh, valid Idempotency-Key. */
export function newKey(): string {
  return `test-${randomUUID()}`;
}

export const silentLogger = pino({ level: "silent" });

/** Payment provider settings of in-process test apps: short, so failure paths stay fast. */
export const TEST_PROVIDER = {
  secretKey: "sk_test_simulator",
  webhookSecret: "whsec_local_simulator_secret",
  timeoutMs: 2000,
  maxNetworkRetries: 0,
};

/**
 * The app around a test database. Its payment provider is the simulator at `providerUrl`;
 * without one, provider calls fail at once (nothing listens on port 9), which suites that
 * never pay don't notice.
 */
export function testApp(
  db: Database,
  config: Partial<AppDeps["config"]> = {},
  options: Partial<Pick<AppDeps, "provider" | "logger" | "metrics">> & {
    providerUrl?: string;
  } = {},
) {
  return createApp({
    db,
    logger: options.logger ?? silentLogger,
    metrics: options.metrics,
    provider:
      options.provider ??
      stripeProvider({ ...TEST_PROVIDER, apiUrl: options.providerUrl ?? "http://127.0.0.1:9" }),
    config: {
      IDEMPOTENCY_TTL_MS: 24 * 60 * 60 * 1000,
      IDEMPOTENCY_WAIT_MS: 5000,
      IDEMPOTENCY_CACHE_BYTES: 16 * 1024 * 1024,
      PAYMENT_LEASE_MS: 10_000,
      ...config,
    },
  });
}

// biome-ignore lint/suspicious/noExplicitAny: tests assert response bodies rather than type them
export type JsonBody = any;
/** A fetch Response whose `json()` is loosely typed, for assertions. */
export type TestResponse = Omit<Response, "json"> & { json(): Promise<JsonBody> };

type Fetcher = { request: (path: string, init?: RequestInit) => Response | Promise<Response> };

let validator: OpenApiValidator | undefined;
/** What this test file's responses matched in openapi.yaml, one entry per response. */
const validated: string[] = [];

// Reported per test file; the global teardown adds them up and prints the total.
afterAll(() => {
  if (validated.length === 0) return;
  writeFileSync(
    join(inject("openapiReportDir"), `${randomUUID()}.json`),
    JSON.stringify(validated),
  );
});

/**
 * Checks a response against openapi.yaml (see OpenApiValidator): a status, header or body the
 * document does not describe fails the test that received it.
 */
export async function expectDocumented(method: string, path: string, res: Response) {
  validator ??= OpenApiValidator.fromRepository();
  validated.push(await validator.validate(method, path, res));
}

/**
 * Requests as a tenant would send them, against an in-process app or a listening server. Every
 * response is checked against openapi.yaml before the test sees it. A null `apiKey` sends no
 * `Authorization` header.
 */
export function apiClient(target: Fetcher | string, apiKey: string | null) {
  const auth: Record<string, string> = apiKey === null ? {} : { Authorization: `Bearer ${apiKey}` };
  const send = async (path: string, init: RequestInit): Promise<TestResponse> => {
    if (typeof target !== "string" && typeof init.body === "string") {
      // An HTTP client sends the body's length; a Request built in process has no such header,
      // and the app's 415 check reads it, so add it as the wire would.
      init.headers = { ...init.headers, "Content-Length": String(Buffer.byteLength(init.body)) };
    }
    const res =
      typeof target === "string"
        ? await fetch(`${target}${path}`, init)
        : await target.request(path, init);
    await expectDocumented(init.method ?? "GET", path, res);
    return res;
  };
  return {
    post(
      path: string,
      body?: unknown,
      options: { key?: string | null; headers?: Record<string, string> } = {},
    ) {
      const headers: Record<string, string> = { ...auth };
      if (options.key !== null) headers["Idempotency-Key"] = options.key ?? newKey();
      if (body !== undefined) headers["Content-Type"] = "application/json";
      return send(path, {
        method: "POST",
        headers: { ...headers, ...options.headers },
        body:
          body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      });
    },
    get(path: string) {
      return send(path, { headers: auth });
    },
  };
}

export const ORDER_BODY = {
  currency: "EUR",
  items: [
    { sku: "SKU-1", name: "T-shirt", quantity: 2, unit_amount: 1500 },
    { sku: "SKU-2", name: "Socks", quantity: 1, unit_amount: 500 },
  ],
  customer_email: "ada@example.com",
  metadata: { cart: "c_1" },
};

/** Row counts of one tenant: what a request left behind. */
export async function tenantRows(db: Database, tenantId: string) {
  const [[o], [i], [k]] = await Promise.all([
    db.select({ n: count() }).from(orders).where(eq(orders.tenantId, tenantId)),
    db.select({ n: count() }).from(orderItems).where(eq(orderItems.tenantId, tenantId)),
    db.select({ n: count() }).from(idempotencyKeys).where(eq(idempotencyKeys.tenantId, tenantId)),
  ]);
  return { orders: o?.n ?? 0, items: i?.n ?? 0, keys: k?.n ?? 0 };
}

/** The whole problem+json body an error code produces; `extra` overrides fields. */
export function expectedProblem(code: ErrorCode, extra: Record<string, unknown> = {}) {
  return {
    type: `${PROBLEM_TYPE_BASE}${code}`,
    title: ERRORS[code].title,
    status: ERRORS[code].status,
    detail: ERRORS[code].detail,
    code,
    request_id: expect.any(String),
    ...extra,
  };
}

/**
 * Whether this run's database is distributed over a Citus cluster (`CITUS_NODES`): lock waits
 * are then read from `citus_lock_waits`, since `pg_blocking_pids` on the coordinator does not
 * see a wait on a worker.
 */
export function onCitus(): boolean {
  return inject("citusNodeUrls").length > 0;
}

/**
 * Holds a lock on the tenant's row. Inserting an order checks its foreign key to that row, so
 * every create of this tenant blocks mid-transaction (after claiming its key) until `release`:
 * a way to hold a real request in flight without any test hook in the server.
 */
export async function holdTenantRow(db: Database, tenantId: string) {
  if (!onCitus()) {
    return holdRowLock(
      db,
      sql`SELECT pg_backend_pid() AS pid FROM tenants WHERE id = ${tenantId} FOR UPDATE`,
    );
  }
  // On Citus, `FOR UPDATE` on the reference table would lock one copy of the row and the whole
  // table's shard on every node, which blocks every suite's tenant creation. What the create's
  // foreign key check reads is the copy on the worker holding the tenant's shards: lock that
  // row there, directly in the shard.
  const [where] = await db.execute<{ node: string; shard: string; database: string }>(sql`
    SELECT s.nodename || ':' || s.nodeport AS node, current_database() AS database,
      (SELECT shard_name('tenants'::regclass, shardid) FROM pg_dist_shard
        WHERE logicalrelid = 'tenants'::regclass) AS shard
    FROM citus_shards s
    WHERE s.table_name = 'orders'::regclass
      AND s.shardid = get_shard_id_for_distribution_column('orders', ${tenantId}::text)`);
  if (!where) throw new Error(`no shard of orders for tenant ${tenantId}`);
  const node = inject("citusNodeUrls").find((u) => new URL(u).host === where.node);
  if (!node) throw new Error(`no CITUS_NODES entry for ${where.node}`);
  const url = new URL(node);
  url.pathname = `/${where.database}`;
  const worker = openDatabase(url.toString(), { max: 2 });
  const hold = await holdRowLock(
    worker.db,
    sql`SELECT pg_backend_pid() AS pid FROM ${sql.identifier(where.shard)}
      WHERE id = ${tenantId} FOR UPDATE`,
  );
  return {
    ...hold,
    release: async () => {
      await hold.release();
      await worker.close();
    },
  };
}

/**
 * Runs `lockingSelect` (which must select `pg_backend_pid() AS pid` and lock rows, `FOR UPDATE`)
 * in a transaction held open until `release`.
 */
export async function holdRowLock(db: Database, lockingSelect: SQL) {
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let locked: (pid: number) => void = () => {};
  const holder = new Promise<number>((resolve) => {
    locked = resolve;
  });
  const citus = onCitus();
  const done = db.transaction(async (tx) => {
    const [row] = await tx.execute<{ pid: number }>(lockingSelect);
    if (citus) {
      // On Citus the waits happen on the nodes holding the shards, under global pids.
      const [g] = await tx.execute<{ gpid: string }>(
        sql`SELECT citus_backend_gpid()::text AS gpid`,
      );
      locked(Number(g?.gpid ?? 0));
    } else {
      locked(row?.pid ?? 0);
    }
    await released;
  });
  const holderPid = await holder;
  return {
    release: async () => {
      release();
      await done;
    },
    /**
     * Resolves once `n` transactions wait for this lock, directly or behind one that does (a
     * duplicate request waits for the first request's key, which waits for this row).
     */
    async blocked(n: number, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const [row] = await db.execute<{ n: number }>(
          citus
            ? sql`
          WITH RECURSIVE waits AS MATERIALIZED (
            SELECT waiting_gpid, blocking_gpid FROM citus_lock_waits
          ), waiting(gpid) AS (
            SELECT ${holderPid}::bigint
            UNION
            SELECT w.waiting_gpid FROM waits w JOIN waiting ON w.blocking_gpid = waiting.gpid
          )
          SELECT (count(*) - 1)::int AS n FROM waiting`
            : sql`
          WITH RECURSIVE waiting(pid) AS (
            SELECT ${holderPid}::int
            UNION
            SELECT a.pid FROM pg_stat_activity a JOIN waiting w ON w.pid = ANY(pg_blocking_pids(a.pid))
          )
          SELECT (count(*) - 1)::int AS n FROM waiting`,
        );
        if ((row?.n ?? 0) >= n) return;
        if (Date.now() > deadline)
          throw new Error(`expected ${n} transactions to wait for the lock`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
}

/**
 * Resolves once `n` transactions of the application `applicationName` wait on a lock in this
 * database: proof that a request is really held mid-transaction, whatever the machine's speed.
 */
export async function waitForLockWaits(
  db: Database,
  n: number,
  applicationName: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [row] = await db.execute<{ n: number }>(
      onCitus()
        ? sql`
      SELECT count(DISTINCT w.waiting_gpid)::int AS n FROM citus_lock_waits w
      JOIN citus_stat_activity a ON a.global_pid = w.waiting_gpid AND NOT a.is_worker_query
      WHERE a.application_name = ${applicationName}`
        : sql`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock'
        AND application_name = ${applicationName}`,
    );
    if ((row?.n ?? 0) >= n) return;
    if (Date.now() > deadline) throw new Error(`expected ${n} transactions waiting on a lock`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
