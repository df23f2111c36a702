import { randomUUID } from "node:crypto";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { createDatabase, dropDatabase } from "../../test/helpers/test-database.js";
import { createTransfersApp } from "./app.js";
import { migrate } from "./migrate.js";

/**
 * The example on a database of its own (same server as the rest of the suite: DATABASE_URL,
 * else testcontainers, else embedded PostgreSQL), one row of the layer's decision table per test.
 */
const name = `test_transfers_${randomUUID().slice(0, 8)}`;
let client: postgres.Sql;
let app: ReturnType<typeof createTransfersApp>;

beforeAll(async () => {
  client = postgres(await createDatabase(inject("adminUrl"), name), {
    max: 10,
    onnotice: () => {},
  });
  await migrate(client);
  app = createTransfersApp(drizzle(client));
});
afterAll(async () => {
  await client.end();
  await dropDatabase(inject("adminUrl"), name);
});
beforeEach(async () => {
  await client`TRUNCATE transfers, accounts, idempotency_keys`;
  await client`INSERT INTO accounts (id, balance) VALUES ('alice', 10000), ('bob', 0)`;
});

const newKey = () => `transfer-${randomUUID()}`;
const transfer = (key: string | undefined, body: unknown) =>
  app.request("/transfers", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(key ? { "Idempotency-Key": key } : {}) },
    body: JSON.stringify(body),
  });
const ALICE_TO_BOB = { from: "alice", to: "bob", amount: 2500 };

async function state() {
  const balances = await client<{ id: string; balance: string }[]>`
    SELECT id, balance FROM accounts ORDER BY id`;
  const [counts] = await client<{ transfers: number; records: number }[]>`
    SELECT (SELECT count(*)::int FROM transfers) AS transfers,
      (SELECT count(*)::int FROM idempotency_keys) AS records`;
  return {
    balances: Object.fromEntries(balances.map((row) => [row.id, Number(row.balance)])),
    ...counts,
  };
}

describe("the transfers example on the layer's public surface", () => {
  it("executes a new key once and replays the stored 201 byte for byte to a retry", async () => {
    const key = newKey();
    const first = await transfer(key, ALICE_TO_BOB);
    const firstBody = await first.text();
    expect(first.status).toBe(201);
    expect(first.headers.get("idempotent-replayed")).toBe("false");

    // Key order and whitespace do not change the request's identity.
    const retry = await transfer(key, { amount: 2500, to: "bob", from: "alice" });
    expect(retry.status).toBe(201);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect(retry.headers.get("location")).toBe(first.headers.get("location"));
    expect(await retry.text()).toBe(firstBody);
    expect(await state()).toEqual({
      balances: { alice: 7500, bob: 2500 },
      transfers: 1,
      records: 1,
    });
    // The defaults: one tenant, `idk_` and a UUID for the record, kept for 24 hours.
    const [record] = await client<{ tenant_id: string; record_id: string; hours: number }[]>`
      SELECT tenant_id, record_id,
        round(extract(epoch FROM expires_at - created_at) / 3600)::int AS hours
      FROM idempotency_keys WHERE key = ${key}`;
    expect(record?.tenant_id).toBe("default");
    expect(record?.record_id).toMatch(/^idk_[0-9a-f-]{36}$/);
    expect(record?.hours).toBe(24);
  });

  it("answers 422 idempotency_key_reused for the key with another body, moving nothing", async () => {
    const key = newKey();
    expect((await transfer(key, ALICE_TO_BOB)).status).toBe(201);
    const reused = await transfer(key, { ...ALICE_TO_BOB, amount: 9999 });
    expect(reused.status).toBe(422);
    expect(reused.headers.get("content-type")).toBe("application/problem+json");
    expect(await reused.json()).toEqual({
      type: "tag:idempotent-payments.dev,2026:problems/idempotency_key_reused",
      title: "Idempotency-Key reused",
      status: 422,
      detail:
        "This Idempotency-Key was already used for a request with a different method, path or " +
        "body. Use a new key for a new request.",
      code: "idempotency_key_reused",
    });
    expect(await state()).toEqual({
      balances: { alice: 7500, bob: 2500 },
      transfers: 1,
      records: 1,
    });
  });

  it("runs 20 concurrent duplicates once: one transfer, 20 identical answers", async () => {
    const key = newKey();
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => transfer(key, ALICE_TO_BOB)),
    );
    const bodies = await Promise.all(responses.map((response) => response.text()));
    expect(responses.map((response) => response.status)).toEqual(Array(20).fill(201));
    expect(new Set(bodies).size).toBe(1);
    const replayed = responses.filter((r) => r.headers.get("idempotent-replayed") === "true");
    expect(replayed).toHaveLength(19);
    expect(await state()).toEqual({
      balances: { alice: 7500, bob: 2500 },
      transfers: 1,
      records: 1,
    });
  });

  it("rolls a 5xx back with its writes and stores nothing, so the retry executes", async () => {
    // A failure after both balance updates: the transfer row's insert raises.
    await client.unsafe(`
      CREATE FUNCTION fail_transfer() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'ledger offline'; END $$;
      CREATE TRIGGER fail_transfer BEFORE INSERT ON transfers
        FOR EACH ROW EXECUTE FUNCTION fail_transfer();`);
    const key = newKey();
    let failed: Response;
    const log = console.error;
    console.error = () => {};
    try {
      failed = await transfer(key, ALICE_TO_BOB);
    } finally {
      console.error = log;
      await client.unsafe(
        `DROP TRIGGER fail_transfer ON transfers; DROP FUNCTION fail_transfer();`,
      );
    }
    expect(failed.status).toBe(500);
    expect(await state()).toEqual({
      balances: { alice: 10000, bob: 0 },
      transfers: 0,
      records: 0,
    });

    const retry = await transfer(key, ALICE_TO_BOB);
    expect(retry.status).toBe(201);
    expect(retry.headers.get("idempotent-replayed")).toBe("false");
    expect(await state()).toEqual({
      balances: { alice: 7500, bob: 2500 },
      transfers: 1,
      records: 1,
    });
  });

  it("stores a business 409 and replays it even after the account is funded", async () => {
    const key = newKey();
    const tooMuch = { ...ALICE_TO_BOB, amount: 20000 };
    const refused = await transfer(key, tooMuch);
    expect(refused.status).toBe(409);
    expect(await refused.json()).toEqual({ error: "insufficient_funds", balance: 10000 });
    await client`UPDATE accounts SET balance = 50000 WHERE id = 'alice'`;
    const retry = await transfer(key, tooMuch);
    expect(retry.status).toBe(409);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect(await state()).toEqual({
      balances: { alice: 50000, bob: 0 },
      transfers: 0,
      records: 1,
    });
  });

  it("stores no 400, and rejects a request without a key before the handler runs", async () => {
    const key = newKey();
    expect((await transfer(key, { from: "alice", to: "alice", amount: 1 })).status).toBe(400);
    const missing = await transfer(undefined, ALICE_TO_BOB);
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ code: "idempotency_key_missing", status: 400 });
    // The same key works for the corrected body: the 400 left no record behind.
    expect((await transfer(key, ALICE_TO_BOB)).status).toBe(201);
    expect(await state()).toEqual({
      balances: { alice: 7500, bob: 2500 },
      transfers: 1,
      records: 1,
    });
  });
});
