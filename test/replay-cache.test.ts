import { Hono } from "hono";
import { requestId } from "hono/request-id";
import { describe, expect, inject, it } from "vitest";
import { openDatabase, type Transaction } from "../src/db/client.js";
import type { Tenant } from "../src/db/schema.js";
import { throwRejection } from "../src/http/idempotency-problems.js";
import { createErrorHandler } from "../src/http/problem.js";
import { type IdempotencyVariables, idempotency, ReplayCache } from "../src/idempotency/index.js";
import { insertOrder } from "../src/orders/orders.queries.js";
import {
  createTestTenant,
  newKey,
  ORDER_BODY,
  silentLogger,
  useDatabase,
} from "./helpers/harness.js";

const response = (body: string) => ({
  status: 201,
  headers: { "content-type": "application/json" },
  body,
});
const ref = (key: string) => ({ tenantId: "ten_a", key });

describe("ReplayCache", () => {
  it("returns what was set until shortly before it expires", () => {
    const cache = new ReplayCache(1 << 20);
    cache.set(ref("k1"), { fingerprint: "f", requestText: "", response: response("{}") }, 60_000);
    expect(cache.get(ref("k1"))).toMatchObject({
      fingerprint: "f",
      requestText: "",
      response: response("{}"),
    });
    expect(cache.get({ tenantId: "ten_b", key: "k1" })).toBeUndefined();
    cache.set(ref("k2"), { fingerprint: "f", requestText: "", response: response("{}") }, 900);
    expect(cache.get(ref("k2"))).toBeUndefined();
  });

  it("evicts the least recently used entries to stay within its byte budget", () => {
    // Each entry weighs about 0.96 kB here: room for four.
    const cache = new ReplayCache(4000);
    const body = "x".repeat(700);
    for (const key of ["a", "b", "c", "d"]) {
      cache.set(ref(key), { fingerprint: key, requestText: "", response: response(body) }, 60_000);
    }
    expect(cache.get(ref("a"))).toBeDefined();
    cache.set(ref("e"), { fingerprint: "e", requestText: "", response: response(body) }, 60_000);
    expect(cache.size).toBe(4);
    expect(cache.get(ref("b"))).toBeUndefined();
    for (const key of ["a", "c", "d", "e"]) expect(cache.get(ref(key))?.fingerprint).toBe(key);
  });

  it("does not keep a body larger than a quarter of its budget", () => {
    const cache = new ReplayCache(4096);
    cache.set(
      ref("big"),
      { fingerprint: "f", requestText: "", response: response("x".repeat(2000)) },
      60_000,
    );
    expect(cache.get(ref("big"))).toBeUndefined();
  });

  it("remembers the last mismatched request text of an entry, within its byte budget", () => {
    const cache = new ReplayCache(4096);
    cache.setMismatched(ref("absent"), "POST /things\n{}");
    expect(cache.size).toBe(0);
    cache.set(ref("k"), { fingerprint: "f", requestText: "a", response: response("{}") }, 60_000);
    cache.setMismatched(ref("k"), 'POST /things\n{"n":2}');
    expect(cache.get(ref("k"))?.mismatchedText).toBe('POST /things\n{"n":2}');
    // A text that would make the entry outweigh a quarter of the budget is not kept.
    cache.setMismatched(ref("k"), "x".repeat(2000));
    expect(cache.get(ref("k"))?.mismatchedText).toBe('POST /things\n{"n":2}');
  });
});

describe("replays from memory", () => {
  const { db } = useDatabase();
  type Env = {
    Variables: IdempotencyVariables<Transaction> & { tenant: Tenant; requestId: string };
  };

  it("answer a key's later retries, and a 422 for a mismatch, with the database gone", async () => {
    const { tenant } = await createTestTenant(db, "cache");
    const own = openDatabase(inject("databaseUrl"), { max: 2 });
    const cache = new ReplayCache(1 << 20);
    const app = new Hono<Env>();
    app.onError(createErrorHandler(silentLogger));
    app.use(requestId());
    app.post(
      "/things",
      idempotency<Env>({
        db: own.db,
        tenantId: () => tenant.id,
        onRejection: throwRejection,
        cache,
      }),
      async (c) =>
        c.json(
          { id: insertOrder(c.var.tx, tenant.id, ORDER_BODY, c.var.transactionTime).order.id },
          201,
        ),
    );
    const send = (key: string, n = 1) =>
      app.request("/things", {
        method: "POST",
        headers: { "Idempotency-Key": key, "Content-Type": "application/json" },
        body: JSON.stringify({ n }),
      });
    const key = newKey();
    const first = await send(key);
    expect(first.status).toBe(201);
    expect((await send(key)).headers.get("idempotent-replayed")).toBe("true");
    await own.close();

    const replay = await send(key);
    expect(replay.status).toBe(201);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    const firstText = await first.text();
    expect(await replay.text()).toBe(firstText);
    // Other bytes, same request: recognised by its fingerprint.
    const spaced = await app.request("/things", {
      method: "POST",
      headers: { "Idempotency-Key": key, "Content-Type": "application/json" },
      body: '{ "n" : 1 }',
    });
    expect(spaced.status).toBe(201);
    expect(await spaced.text()).toBe(firstText);
    const mismatch = await send(key, 2);
    expect(mismatch.status).toBe(422);
    const mismatchBody = (await mismatch.json()) as Record<string, unknown>;
    expect(mismatchBody).toMatchObject({ code: "idempotency_key_reused", status: 422 });
    // The same wrong request again is recognised by its bytes, and answered alike.
    expect(cache.get({ tenantId: tenant.id, key })?.mismatchedText).toBe('POST /things\n{"n":2}');
    const again = await send(key, 2);
    expect(again.status).toBe(422);
    expect(await again.json()).toEqual({ ...mismatchBody, request_id: expect.any(String) });
    // The original request is still a replay after that.
    expect(await (await send(key)).text()).toBe(firstText);
    // Anything the cache cannot answer needs the database, which is gone: 503, retry later.
    expect((await send(newKey())).status).toBe(503);
  });
});
