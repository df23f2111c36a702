import { setTimeout as sleep } from "node:timers/promises";
import { eq, sql } from "drizzle-orm";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ADVISORY_LOCK_NAMESPACE, JOB_LOCKS } from "../src/db/locks.js";
import { idempotencyKeys } from "../src/db/schema.js";
import { deleteExpiredRecords, runCleanup } from "../src/idempotency/cleanup.js";
import { claimKey, saveFinishedRecord } from "../src/idempotency/store.js";
import { newId } from "../src/ids.js";
import {
  apiClient,
  createTestTenant,
  holdTenantRow,
  newKey,
  ORDER_BODY,
  tenantRows,
  testApp,
} from "./helpers/harness.js";
import {
  expiredCount,
  insertRecords,
  remainingKeys,
  usePrivateDatabase,
} from "./helpers/private-database.js";
import { startServer } from "./helpers/server-process.js";

/**
 * Retention on a database of this suite's own: cleanup deletes across tenants, and the
 * run's shared database holds other suites' records.
 */
const priv = usePrivateDatabase("retention");
const db = () => priv.handle.db;
const BATCH = 100;

/** Fails with a clear message instead of hanging when `promise` waits on something. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not finish in ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Deletes until nothing deletable is left; what other tests left expired goes too. */
async function cleanAll(): Promise<number> {
  return (await runCleanup(priv.handle, { batchSize: BATCH })).deleted;
}

/**
 * Removes a tenant's records once its test is done with them, so records with a short TTL do
 * not expire in the middle of a later test that counts what cleanup deleted.
 */
async function forget(tenantId: string) {
  await db().delete(idempotencyKeys).where(eq(idempotencyKeys.tenantId, tenantId));
}

describe("which records cleanup deletes", () => {
  it.each([
    ["finished, expired, no lease", { expiresInSeconds: -1 }, true],
    [
      "started, expired, lease ended",
      { expiresInSeconds: -1, recoveryPoint: "started", leaseSeconds: -1 },
      true,
    ],
    ["started, expired, no lease", { expiresInSeconds: -1, recoveryPoint: "started" }, true],
    ["finished, not yet expired", { expiresInSeconds: 60 }, false],
    [
      "started, expired, lease still held (request in progress)",
      { expiresInSeconds: -1, recoveryPoint: "started", leaseSeconds: 3600 },
      false,
    ],
    ["finished, expired, lease still held", { expiresInSeconds: -1, leaseSeconds: 3600 }, false],
    [
      "at an intermediate recovery point, expired, lease ended",
      { expiresInSeconds: -1, recoveryPoint: "payment_created", leaseSeconds: -1 },
      false,
    ],
    [
      "at an intermediate recovery point, expired, no lease",
      { expiresInSeconds: -1, recoveryPoint: "payment_created" },
      false,
    ],
  ] as const)("a record %s: deleted = %s", async (_label, spec, deleted) => {
    const { tenant } = await createTestTenant(db(), "clause");
    const [key] = await insertRecords(db(), tenant.id, spec);
    await cleanAll();
    expect(await remainingKeys(db(), tenant.id)).toEqual(deleted ? [] : [key]);
  });

  it("deletes at most `limit` records per statement and reports how many", async () => {
    await cleanAll();
    const { tenant } = await createTestTenant(db(), "limit");
    await insertRecords(db(), tenant.id, { count: 250, expiresInSeconds: -1 });
    expect(await deleteExpiredRecords(db(), { limit: 100 })).toBe(100);
    expect(await deleteExpiredRecords(db(), { limit: 100 })).toBe(100);
    expect(await deleteExpiredRecords(db(), { limit: 100 })).toBe(50);
    expect(await deleteExpiredRecords(db(), { limit: 100 })).toBe(0);
    expect(await remainingKeys(db(), tenant.id)).toEqual([]);
  });

  it("refuses a one-connection pool, whose only connection the run lock would take", async () => {
    const single = priv.open(1);
    await expect(runCleanup(single, { batchSize: BATCH })).rejects.toThrow(
      "runCleanup needs a pool of at least 2 connections",
    );
  });
});

describe("the TTL", () => {
  it("sets expires_at exactly IDEMPOTENCY_TTL_MS after created_at, for any TTL", async () => {
    const { tenant } = await createTestTenant(db(), "ttl-property");
    const tenYearsMs = 10 * 365 * 24 * 60 * 60 * 1000;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: tenYearsMs }), async (ttlMs) => {
        const key = newKey();
        const request = {
          tenantId: tenant.id,
          key,
          fingerprint: "f",
          method: "POST",
          path: "/v1/orders",
        };
        await db().transaction(async (tx) => {
          await claimKey(tx, request, 1000);
          await saveFinishedRecord(
            tx,
            request,
            { status: 201, headers: {}, body: "{}" },
            ttlMs,
            newId("idk"),
          );
        });
        // created_at and expires_at are two readings of the clock in one statement, so
        // expires_at may trail by the microseconds between them, never lead.
        const [row] = await db().execute<{ excess_us: string }>(sql`
          SELECT (extract(epoch FROM expires_at - created_at) * 1000000 - ${ttlMs}::bigint * 1000)
            AS excess_us
          FROM idempotency_keys WHERE tenant_id = ${tenant.id} AND key = ${key}`);
        const excessUs = Number(row?.excess_us);
        expect(excessUs).toBeGreaterThanOrEqual(0);
        expect(excessUs).toBeLessThan(50_000);
      }),
      { numRuns: 40 },
    );
    await forget(tenant.id);
  });

  it("is read from the environment by the server: 1.5 s replays, then executes anew", async () => {
    const server = await startServer({
      DATABASE_URL: priv.url,
      IDEMPOTENCY_TTL_MS: "1500",
      CLEANUP_INTERVAL_MS: "0",
    });
    try {
      const { apiKey, tenant } = await createTestTenant(db(), "ttl-env");
      const api = apiClient(server.url, apiKey);
      const key = newKey();
      const first = await api.post("/v1/orders", ORDER_BODY, { key });
      expect(first.status).toBe(201);
      const [record] = await db()
        .select()
        .from(idempotencyKeys)
        .where(eq(idempotencyKeys.tenantId, tenant.id));
      const lifetime = (record?.expiresAt.getTime() ?? 0) - (record?.createdAt.getTime() ?? 0);
      expect(lifetime).toBeGreaterThanOrEqual(1500);
      expect(lifetime).toBeLessThanOrEqual(1501);
      expect(
        (await api.post("/v1/orders", ORDER_BODY, { key })).headers.get("idempotent-replayed"),
      ).toBe("true");

      await sleep(Math.max(0, (record?.expiresAt.getTime() ?? 0) - Date.now()) + 100);
      const late = await api.post("/v1/orders", ORDER_BODY, { key });
      expect(late.status).toBe(201);
      expect(late.headers.get("idempotent-replayed")).toBe("false");
      expect(await tenantRows(db(), tenant.id)).toEqual({ orders: 2, items: 4, keys: 1 });
      await forget(tenant.id);
    } finally {
      await server.kill("SIGTERM");
    }
  });
});

describe("an expired key and cleanup", () => {
  it("executes anew before cleanup ran; cleanup then deletes every expired record, no live one, no order", async () => {
    await cleanAll();
    const { apiKey, tenant } = await createTestTenant(db(), "expired");
    const shortLived = apiClient(testApp(db(), { IDEMPOTENCY_TTL_MS: 1000 }), apiKey);
    const longLived = apiClient(testApp(db()), apiKey);
    const [a, b, c, live] = [newKey(), newKey(), newKey(), newKey()];
    const firstA = await (await shortLived.post("/v1/orders", ORDER_BODY, { key: a })).json();
    await shortLived.post("/v1/orders", ORDER_BODY, { key: b });
    await shortLived.post("/v1/orders", ORDER_BODY, { key: c });
    await longLived.post("/v1/orders", ORDER_BODY, { key: live });
    await sleep(1100);

    const again = await longLived.post("/v1/orders", ORDER_BODY, { key: a });
    expect(again.status).toBe(201);
    expect(again.headers.get("idempotent-replayed")).toBe("false");
    expect((await again.json()).id).not.toBe(firstA.id);
    expect(await expiredCount(db(), tenant.id)).toBe(2);

    const result = await runCleanup(priv.handle, { batchSize: BATCH });
    expect(result).toMatchObject({ status: "completed", deleted: 2, batches: 1 });
    expect(await remainingKeys(db(), tenant.id)).toEqual([a, live].sort());
    // Every order keeps its data: four creates and one re-execution, two items each.
    expect(await tenantRows(db(), tenant.id)).toEqual({ orders: 5, items: 10, keys: 2 });
    const replay = await longLived.post("/v1/orders", ORDER_BODY, { key: live });
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
  });

  it("removes a large backlog across tenants in bounded batches, leaving the live records", async () => {
    await cleanAll();
    const tenants = await Promise.all([1, 2, 3].map(() => createTestTenant(db(), "backlog")));
    const live: string[] = [];
    for (const { tenant } of tenants) {
      await insertRecords(db(), tenant.id, { count: 1000, expiresInSeconds: -60 });
      live.push(...(await insertRecords(db(), tenant.id, { count: 5, expiresInSeconds: 3600 })));
    }
    const progress: number[] = [];
    const result = await runCleanup(priv.handle, {
      batchSize: 250,
      countFirst: true,
      onProgress: (p) => progress.push(p.deleted),
    });
    expect(result).toMatchObject({ status: "completed", deleted: 3000, batches: 12, total: 3000 });
    expect(progress).toEqual([0, ...Array.from({ length: 12 }, (_, i) => (i + 1) * 250)]);
    for (const { tenant } of tenants) expect(await expiredCount(db(), tenant.id)).toBe(0);
    const remaining = (
      await Promise.all(tenants.map(({ tenant }) => remainingKeys(db(), tenant.id)))
    ).flat();
    expect(remaining.sort()).toEqual(live.sort());
  });
});

describe("a record whose request is in progress", () => {
  it("survives cleanup while its lease holds, and goes once the lease ended", async () => {
    const { tenant } = await createTestTenant(db(), "lease");
    const [key] = await insertRecords(db(), tenant.id, {
      expiresInSeconds: -1,
      recoveryPoint: "started",
      leaseSeconds: 1,
    });
    await cleanAll();
    expect(await remainingKeys(db(), tenant.id)).toEqual([key]);
    await sleep(1100);
    await cleanAll();
    expect(await remainingKeys(db(), tenant.id)).toEqual([]);
  });

  it("is skipped, not waited for, while a live transaction holds its row; it survives if renewed", async () => {
    const { tenant } = await createTestTenant(db(), "row-lock");
    const [renewed] = await insertRecords(db(), tenant.id, {
      count: 2,
      expiresInSeconds: -1,
    });
    // What a re-execution of the expired key does at its end: the upsert that renews the record,
    // its transaction still open.
    let commit: () => void = () => {};
    const committed = new Promise<void>((resolve) => {
      commit = resolve;
    });
    let locked: () => void = () => {};
    const isLocked = new Promise<void>((resolve) => {
      locked = resolve;
    });
    const writer = db().transaction(async (tx) => {
      await tx.execute(sql`
        UPDATE idempotency_keys SET expires_at = now() + interval '1 hour'
        WHERE tenant_id = ${tenant.id} AND key = ${renewed}`);
      locked();
      await committed;
    });
    await isLocked;
    const result = await within(10_000, "cleanup beside a locked row", cleanAll());
    expect(result).toBeGreaterThanOrEqual(1);
    // The other expired record went; the locked one is still there.
    expect(await remainingKeys(db(), tenant.id)).toEqual([renewed]);
    commit();
    await writer;
    await cleanAll();
    expect(await remainingKeys(db(), tenant.id)).toEqual([renewed]);
  });

  it("of an order being re-executed under an expired key: cleanup neither blocks nor breaks it", async () => {
    const { apiKey, tenant } = await createTestTenant(db(), "reexec");
    const key = newKey();
    const shortLived = apiClient(testApp(db(), { IDEMPOTENCY_TTL_MS: 500 }), apiKey);
    const first = await (await shortLived.post("/v1/orders", ORDER_BODY, { key })).json();
    await sleep(600);
    // The re-execution stores a record of the default TTL, which outlives this suite.
    const api = apiClient(testApp(db()), apiKey);
    // The re-execution holds the expired record's row (its claim) and waits inside its
    // transaction, having seen the expired record and before writing its own.
    const hold = await holdTenantRow(db(), tenant.id);
    const inFlight = api.post("/v1/orders", ORDER_BODY, { key });
    await hold.blocked(1);
    // Cleanup goes past the claimed row (SKIP LOCKED) instead of deleting it under the claim.
    await within(10_000, "cleanup beside an in-flight request", cleanAll());
    expect(await remainingKeys(db(), tenant.id)).toEqual([key]);
    await hold.release();
    const res = await inFlight;
    expect(res.status).toBe(201);
    expect(res.headers.get("idempotent-replayed")).toBe("false");
    const second = await res.json();
    expect(second.id).not.toBe(first.id);
    // Its new record is live: a later cleanup keeps it and a retry replays it.
    await cleanAll();
    expect(await remainingKeys(db(), tenant.id)).toEqual([key]);
    expect(await tenantRows(db(), tenant.id)).toEqual({ orders: 2, items: 4, keys: 1 });
  });

  it("stays consistent when many expired keys are re-executed while cleanup runs", async () => {
    await cleanAll();
    const { apiKey, tenant } = await createTestTenant(db(), "race");
    const keys = await insertRecords(db(), tenant.id, { count: 120, expiresInSeconds: -1 });
    const api = apiClient(testApp(db()), apiKey);
    const cleanups = Promise.all([
      runCleanup(priv.handle, { batchSize: 5 }),
      runCleanup(priv.open(3), { batchSize: 5 }),
    ]);
    const answers: { status: number; replayed: string | null }[] = [];
    for (let i = 0; i < keys.length; i += 8) {
      const wave = keys.slice(i, i + 8).map((key) => api.post("/v1/orders", ORDER_BODY, { key }));
      for (const res of await Promise.all(wave)) {
        answers.push({ status: res.status, replayed: res.headers.get("idempotent-replayed") });
      }
    }
    const results = await cleanups;
    expect(answers).toEqual(keys.map(() => ({ status: 201, replayed: "false" })));
    // Every key ends with exactly one live record, the one of its re-execution.
    expect((await remainingKeys(db(), tenant.id)).sort()).toEqual([...keys].sort());
    const [fresh] = await db().execute<{ n: number }>(sql`
      SELECT count(*)::int AS n FROM idempotency_keys
      WHERE tenant_id = ${tenant.id} AND expires_at > now() AND response_body LIKE '{"id":"ord_%'`);
    expect(fresh?.n).toBe(keys.length);
    expect(await tenantRows(db(), tenant.id)).toEqual({
      orders: keys.length,
      items: 2 * keys.length,
      keys: keys.length,
    });
    expect(results.map((r) => r.status)).not.toContain("aborted");
  });
});

describe("two cleanup runners", () => {
  it("started together delete each expired record once between them", async () => {
    await cleanAll();
    const { tenant } = await createTestTenant(db(), "two-runners");
    await insertRecords(db(), tenant.id, { count: 3000, expiresInSeconds: -1 });
    const results = await Promise.all([
      runCleanup(priv.open(2), { batchSize: 50 }),
      runCleanup(priv.open(2), { batchSize: 50 }),
    ]);
    expect(results.map((r) => r.deleted).reduce((x, y) => x + y)).toBe(3000);
    expect(results.map((r) => r.status).sort()).toContain("completed");
    expect(await remainingKeys(db(), tenant.id)).toEqual([]);
  });

  it("do not both run: the second finds the run lock taken and returns at once", async () => {
    await cleanAll();
    const { tenant } = await createTestTenant(db(), "run-lock");
    const keys = await insertRecords(db(), tenant.id, { count: 10, expiresInSeconds: -1 });
    const holder = await priv.handle.client.reserve();
    try {
      await holder`SELECT pg_advisory_lock(${ADVISORY_LOCK_NAMESPACE}, ${JOB_LOCKS.cleanup})`;
      const result = await within(
        5000,
        "a runner facing a held lock",
        runCleanup(priv.open(2), { batchSize: BATCH }),
      );
      expect(result).toMatchObject({ status: "skipped", deleted: 0, batches: 0 });
      expect(await remainingKeys(db(), tenant.id)).toEqual([...keys].sort());
    } finally {
      await holder`SELECT pg_advisory_unlock(${ADVISORY_LOCK_NAMESPACE}, ${JOB_LOCKS.cleanup})`;
      holder.release();
    }
    expect(await cleanAll()).toBe(10);
  });

  it("never wait on each other's rows even without the run lock (SKIP LOCKED)", async () => {
    await cleanAll();
    const { tenant } = await createTestTenant(db(), "skip-locked");
    await insertRecords(db(), tenant.id, { count: 300, expiresInSeconds: -1 });
    const other = priv.open(2);
    // One batch deleted its rows and keeps its transaction open...
    let finish: () => void = () => {};
    const finished = new Promise<void>((resolve) => {
      finish = resolve;
    });
    let held: (n: number) => void = () => {};
    const heldCount = new Promise<number>((resolve) => {
      held = resolve;
    });
    const slowBatch = db().transaction(async (tx) => {
      held(await deleteExpiredRecords(tx, { limit: 100 }));
      await finished;
    });
    expect(await heldCount).toBe(100);
    // ...while another runner's batches go past those rows instead of waiting for them.
    let deletedMeanwhile = 0;
    for (;;) {
      const n = await within(
        5000,
        "a batch beside a held batch",
        deleteExpiredRecords(other.db, { limit: 50 }),
      );
      if (n === 0) break;
      deletedMeanwhile += n;
    }
    expect(deletedMeanwhile).toBe(200);
    // And live traffic of the same tenant goes on meanwhile.
    const { apiKey } = await createTestTenant(db(), "traffic");
    const res = await within(
      5000,
      "a create beside a held batch",
      apiClient(testApp(db()), apiKey).post("/v1/orders", ORDER_BODY),
    );
    expect(res.status).toBe(201);
    finish();
    await slowBatch;
    expect(await remainingKeys(db(), tenant.id)).toEqual([]);
  });
});
