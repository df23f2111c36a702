import type { Context } from "hono";
import { Hono } from "hono";
import { requestId } from "hono/request-id";
import { describe, expect, it } from "vitest";
import type { Transaction } from "../src/db/client.js";
import type { Tenant } from "../src/db/schema.js";
import { ApiError } from "../src/http/errors.js";
import { throwRejection } from "../src/http/idempotency-problems.js";
import { createErrorHandler } from "../src/http/problem.js";
import {
  type IdempotencyEvent,
  type IdempotencyVariables,
  idempotency,
} from "../src/idempotency/index.js";
import { insertOrder } from "../src/orders/orders.queries.js";
import {
  createTestTenant,
  newKey,
  ORDER_BODY,
  silentLogger,
  tenantRows,
  useDatabase,
  waitForLockWaits,
} from "./helpers/harness.js";

/**
 * The middleware lifted into a bare Hono app, as another team would use it: its handler
 * writes through `c.var.tx` and then behaves as each test asks.
 */
const { db, applicationName } = useDatabase();

type Env = { Variables: IdempotencyVariables<Transaction> & { tenant: Tenant; requestId: string } };

function tinyApp(tenant: Tenant, behave: () => Promise<Response | undefined>, waitMs = 5000) {
  const events: IdempotencyEvent[] = [];
  const app = new Hono<Env>();
  app.onError(createErrorHandler(silentLogger));
  app.use(requestId());
  app.use(async (c, next) => {
    c.set("tenant", tenant);
    await next();
  });
  const idem = idempotency<Env>({
    db,
    onRejection: throwRejection,
    tenantId: (c) => c.var.tenant.id,
    waitMs,
    onOutcome: (_c, event) => events.push(event),
  });
  const handler = async (c: Context<Env>) => {
    const { order } = insertOrder(c.var.tx, tenant.id, ORDER_BODY, c.var.transactionTime);
    return (await behave()) ?? c.json({ id: order.id }, 201);
  };
  app.post("/things", idem, handler);
  app.put("/things", idem, handler);
  const send = (key: string, method = "POST") =>
    app.request("/things", {
      method,
      headers: { "Idempotency-Key": key, "Content-Type": "application/json" },
      body: JSON.stringify({ n: 1 }),
    });
  return { send, events };
}

function latch() {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

async function waitFor(condition: () => boolean, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("idempotency middleware in a bare Hono app", () => {
  it("rolls back a handler that fails after writing, and the retry executes afresh", async () => {
    const { tenant } = await createTestTenant(db, "lift");
    let calls = 0;
    const { send, events } = tinyApp(tenant, async () => {
      calls++;
      if (calls === 1) throw new Error("boom after the insert");
      return undefined;
    });
    const key = newKey();
    const failed = await send(key);
    expect(failed.status).toBe(500);
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 0, items: 0, keys: 0 });

    const retried = await send(key);
    expect(retried.status).toBe(201);
    expect(retried.headers.get("idempotent-replayed")).toBe("false");
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
    expect(events.map((e) => e.outcome)).toEqual(["not_stored", "executed"]);
  });

  it("keeps the outcome of a handler that throws a business error after writing, not its writes", async () => {
    const { tenant } = await createTestTenant(db, "lift");
    const { send } = tinyApp(tenant, async () => {
      throw new ApiError("order_not_cancellable");
    });
    const key = newKey();
    const first = await send(key);
    expect(first.status).toBe(409);
    expect(first.headers.get("idempotent-replayed")).toBe("false");
    const replay = await send(key);
    expect(replay.status).toBe(409);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(await replay.text()).toBe(await first.text());
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 0, items: 0, keys: 1 });
  });

  it("makes a duplicate wait for the running first request, then replay its answer", async () => {
    const { tenant } = await createTestTenant(db, "lift");
    const gate = latch();
    let calls = 0;
    const { send, events } = tinyApp(tenant, async () => {
      calls++;
      await gate.opened;
      return undefined;
    });
    const key = newKey();
    const first = send(key);
    await waitFor(() => calls === 1);
    const duplicate = send(key);
    await waitForLockWaits(db, 1, applicationName);
    await new Promise((resolve) => setTimeout(resolve, 100));
    gate.open();
    const [a, b] = await Promise.all([first, duplicate]);
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(b.headers.get("idempotent-replayed")).toBe("true");
    expect(await b.text()).toBe(await a.text());
    expect(calls).toBe(1);
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
    const replayed = events.find((e) => e.outcome === "replayed");
    expect(replayed?.waitedMs).toBeGreaterThanOrEqual(90);
  });

  it("answers 409 idempotency_key_in_progress with Retry-After once the wait runs out", async () => {
    const { tenant } = await createTestTenant(db, "lift");
    const gate = latch();
    let calls = 0;
    const { send, events } = tinyApp(
      tenant,
      async () => {
        calls++;
        await gate.opened;
        return undefined;
      },
      200,
    );
    const key = newKey();
    const first = send(key);
    await waitFor(() => calls === 1);
    const started = Date.now();
    const duplicate = await send(key);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(duplicate.status).toBe(409);
    expect(duplicate.headers.get("retry-after")).toBe("1");
    expect(((await duplicate.json()) as { code: string }).code).toBe("idempotency_key_in_progress");
    gate.open();
    expect((await first).status).toBe(201);
    const later = await send(key);
    expect(later.headers.get("idempotent-replayed")).toBe("true");
    expect(calls).toBe(1);
    expect(events.map((e) => e.outcome)).toEqual(["in_progress", "executed", "replayed"]);
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
  });

  it("lets a waiting duplicate execute when the first request rolls back", async () => {
    const { tenant } = await createTestTenant(db, "lift");
    const gate = latch();
    let calls = 0;
    const { send } = tinyApp(tenant, async () => {
      calls++;
      if (calls === 1) {
        await gate.opened;
        throw new Error("first attempt fails");
      }
      return undefined;
    });
    const key = newKey();
    const first = send(key);
    await waitFor(() => calls === 1);
    const duplicate = send(key);
    await waitForLockWaits(db, 1, applicationName);
    gate.open();
    const [a, b] = await Promise.all([first, duplicate]);
    expect([a.status, b.status]).toEqual([500, 201]);
    expect(b.headers.get("idempotent-replayed")).toBe("false");
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
  });

  it("answers 422 when the same key comes with another method", async () => {
    const { tenant } = await createTestTenant(db, "lift");
    const { send } = tinyApp(tenant, async () => undefined);
    const key = newKey();
    expect((await send(key, "POST")).status).toBe(201);
    const put = await send(key, "PUT");
    expect(put.status).toBe(422);
    expect(((await put.json()) as { code: string }).code).toBe("idempotency_key_reused");
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
  });
});
