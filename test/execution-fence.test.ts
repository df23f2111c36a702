import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { idempotencyKeys } from "../src/db/schema.js";
import { Execution, LeaseLost } from "../src/idempotency/execution.js";
import { claimKey, claimRecord, takeOverRecord } from "../src/idempotency/store.js";
import { newId } from "../src/ids.js";
import { insertOrder } from "../src/orders/orders.queries.js";
import {
  createTestTenant,
  newKey,
  ORDER_BODY,
  tenantRows,
  useDatabase,
} from "./helpers/harness.js";

/**
 * A phase's fence goes out together with the phase's own first statements. These prove that an
 * execution whose record was taken over still commits nothing, whatever its phase did or
 * decided, and that the attempt that owns the record runs its phases as before.
 */
const { db } = useDatabase();
const OPTIONS = { leaseMs: 30_000, ttlMs: 60_000, requestId: "req_test" };

async function claimed(tenantId: string) {
  const request = { tenantId, key: newKey(), fingerprint: "f", method: "POST", path: "/x" };
  const claim = await db.transaction(async (tx) => {
    await claimKey(tx, request, 1000);
    return claimRecord(tx, request, OPTIONS.leaseMs, OPTIONS.ttlMs, newId("idk"));
  });
  return { request, execution: new Execution(db, request, claim, OPTIONS) };
}

async function recordOf(tenantId: string, key: string) {
  const [record] = await db
    .select()
    .from(idempotencyKeys)
    .where(and(eq(idempotencyKeys.tenantId, tenantId), eq(idempotencyKeys.key, key)));
  return record;
}

describe("a phase of an execution whose record was taken over", () => {
  it("commits none of its writes and throws LeaseLost", async () => {
    const { tenant } = await createTestTenant(db, "fence");
    const { request, execution } = await claimed(tenant.id);
    await takeOverRecord(db, request, OPTIONS.leaseMs);
    const before = await recordOf(tenant.id, request.key);
    await expect(
      execution.phase(async (tx) => {
        insertOrder(tx, tenant.id, ORDER_BODY, new Date());
        return { next: "order_created" };
      }),
    ).rejects.toBeInstanceOf(LeaseLost);
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 0, items: 0, keys: 1 });
    expect(await recordOf(tenant.id, request.key)).toEqual(before);
    expect(before?.attempt).toBe(2);
  });

  it("throws LeaseLost, not the error its work then met", async () => {
    const { tenant } = await createTestTenant(db, "fence");
    const { request, execution } = await claimed(tenant.id);
    await takeOverRecord(db, request, OPTIONS.leaseMs);
    await expect(
      execution.phase(async () => {
        throw new Error("a conflict with the newer attempt's writes");
      }),
    ).rejects.toBeInstanceOf(LeaseLost);
  });
});

describe("a phase of the execution that owns its record", () => {
  it("commits its writes and the record's next recovery point together, then its response", async () => {
    const { tenant } = await createTestTenant(db, "fence");
    const { request, execution } = await claimed(tenant.id);
    await execution.phase(async (tx) => {
      insertOrder(tx, tenant.id, ORDER_BODY, new Date());
      return { next: "order_created" };
    });
    expect((await recordOf(tenant.id, request.key))?.recoveryPoint).toBe("order_created");
    await execution.phase(async () => ({ response: { status: 201, body: { ok: true } } }));
    const record = await recordOf(tenant.id, request.key);
    expect(record).toMatchObject({
      recoveryPoint: "finished",
      responseStatus: 201,
      responseBody: '{"ok":true}',
      lockedUntil: null,
      attempt: 1,
    });
    expect(execution.finalResponse?.body).toBe('{"ok":true}');
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
  });

  it("rolls back its writes when its work fails, and keeps the record where it was", async () => {
    const { tenant } = await createTestTenant(db, "fence");
    const { request, execution } = await claimed(tenant.id);
    await expect(
      execution.phase(async (tx) => {
        insertOrder(tx, tenant.id, ORDER_BODY, new Date());
        throw new Error("the phase failed after writing");
      }),
    ).rejects.toThrow("the phase failed after writing");
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 0, items: 0, keys: 1 });
    expect((await recordOf(tenant.id, request.key))?.recoveryPoint).toBe("started");
  });
});
