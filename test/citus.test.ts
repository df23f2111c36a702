import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { applyCitusLayout, tenantTables, undistributedTenantTables } from "../src/db/citus.js";
import { migrateDatabase } from "../src/db/migrate.js";
import * as schema from "../src/db/schema.js";
import {
  apiClient,
  createTestTenant,
  newKey,
  ORDER_BODY,
  onCitus,
  tenantRows,
  testApp,
  useDatabase,
} from "./helpers/harness.js";
import { PAYABLE_ORDER, paymentRows } from "./helpers/payments.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";
import { type SimulatorProcess, startSimulator } from "./helpers/simulator-process.js";

/**
 * The distributed layout and the guarantees across nodes. On plain PostgreSQL only the first
 * test runs (nothing Citus-specific may happen there); the rest run in Citus mode
 * (`CITUS_NODES=...`), against the run's database on the coordinator and on a worker.
 */
const { db } = useDatabase();
const citus = onCitus();

function admin(url: string) {
  return postgres(url, { max: 1, onnotice: () => {} });
}

describe("the migrations' layout step", () => {
  it("does nothing Citus-specific on plain PostgreSQL, and nothing at all when run again", async () => {
    const layout = await migrateDatabase(inject("databaseUrl"));
    if (!citus) {
      expect(layout).toEqual({ kind: "plain" });
      const client = admin(inject("databaseUrl"));
      try {
        const [ext] =
          await client`SELECT count(*)::int AS n FROM pg_extension WHERE extname = 'citus'`;
        expect(ext?.n).toBe(0);
      } finally {
        await client.end();
      }
      return;
    }
    expect(layout).toEqual({ kind: "distributed", changed: [] });
  });

  it.runIf(citus)(
    "distributes every tenant table by tenant_id, co-located, tenants replicated",
    async () => {
      const client = admin(inject("databaseUrl"));
      try {
        expect(await undistributedTenantTables(client)).toEqual([]);
        const rows = await client<
          { name: string; method: string; model: string; colocation: number }[]
        >`
        SELECT logicalrelid::regclass::text AS name, partmethod AS method, repmodel AS model,
          colocationid AS colocation FROM pg_dist_partition ORDER BY 1`;
        const tables = await tenantTables(client);
        expect(tables).toEqual(
          expect.arrayContaining([
            "idempotency_keys",
            "orders",
            "order_items",
            "payments",
            "refunds",
            "webhook_events",
          ]),
        );
        expect(rows.find((r) => r.name === "tenants")).toMatchObject({ method: "n", model: "t" });
        const colocations = new Set(
          rows.filter((r) => tables.includes(r.name)).map((r) => r.colocation),
        );
        expect(colocations.size).toBe(1);
        expect(rows.filter((r) => tables.includes(r.name)).every((r) => r.method === "h")).toBe(
          true,
        );
      } finally {
        await client.end();
      }
      // The foreign keys hold on the shards: a worker refuses an order of an unknown tenant.
      const worker = admin(inject("citusNodeUrls")[1] as string);
      try {
        const [fks] = await worker<{ n: number }[]>`
        SELECT count(*)::int AS n FROM pg_constraint WHERE contype = 'f'
          AND conrelid::regclass::text LIKE 'order_items_%'`;
        expect(fks?.n).toBeGreaterThan(0);
        await expect(
          worker`INSERT INTO orders (tenant_id, id, status, currency, amount_total, metadata)
          VALUES ('no-such-tenant', 'ord_x', 'pending', 'EUR', 0, '{}')`,
        ).rejects.toThrow(/foreign key/);
      } finally {
        await worker.end();
      }
    },
  );

  it.runIf(citus)("distributes a tenant table a later migration adds, and only once", async () => {
    const client = admin(inject("databaseUrl"));
    try {
      await client`CREATE TABLE later_things (tenant_id text NOT NULL REFERENCES tenants (id),
        id text NOT NULL, PRIMARY KEY (tenant_id, id))`;
      expect(await undistributedTenantTables(client)).toEqual(["later_things"]);
      expect(await applyCitusLayout(client)).toEqual({
        kind: "distributed",
        changed: ["later_things"],
      });
      expect(await applyCitusLayout(client)).toEqual({ kind: "distributed", changed: [] });
      expect(await undistributedTenantTables(client)).toEqual([]);
    } finally {
      await client`DROP TABLE IF EXISTS later_things`;
      await client.end();
    }
  });
});

describe.runIf(citus)("one create's transaction", () => {
  it("goes to one worker as one BEGIN…COMMIT, without two-phase commit", async () => {
    const notices: { message: string; detail: string }[] = [];
    const client = postgres(inject("databaseUrl"), {
      max: 2,
      onnotice: (notice) =>
        notices.push({ message: notice.message ?? "", detail: notice.detail ?? "" }),
      connection: {
        "citus.propagate_set_commands": "local",
        "citus.log_remote_commands": "on",
        client_min_messages: "log",
      },
    });
    try {
      const logged = drizzle(client, { schema });
      const { apiKey, tenant } = await createTestTenant(db, "one-worker");
      notices.length = 0;
      const res = await apiClient(testApp(logged), apiKey).post("/v1/orders", ORDER_BODY);
      expect(res.status).toBe(201);
      const remote = notices.filter((n) => n.message.startsWith("issuing"));
      const servers = new Set(remote.map((n) => /on server \S+@(\S+)/.exec(n.detail)?.[1]));
      expect(remote.some((n) => /INSERT INTO public\.orders_/.test(n.message))).toBe(true);
      expect(servers.size).toBe(1);
      expect([...servers][0]).not.toBe(inject("citusNodeUrls")[0]?.split("@")[1]?.split("/")[0]);
      expect(remote.some((n) => /PREPARE TRANSACTION|COMMIT PREPARED/.test(n.message))).toBe(false);
      expect(remote.filter((n) => /^issuing BEGIN/.test(n.message))).toHaveLength(1);
      expect(remote.filter((n) => /^issuing COMMIT$/.test(n.message))).toHaveLength(1);
      expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
    } finally {
      await client.end();
    }
  });
});

describe.runIf(citus)("duplicates of one key through two nodes", () => {
  let sim: SimulatorProcess;
  let servers: ServerProcess[] = [];
  beforeAll(async () => {
    sim = await startSimulator();
    const [coordinator, worker] = inject("citusNodeUrls");
    servers = await Promise.all(
      [coordinator, worker].map((url) =>
        startServer({
          DATABASE_URL: url as string,
          STRIPE_API_URL: sim.url,
          STRIPE_SECRET_KEY: "sk_test_simulator",
          IDEMPOTENCY_WAIT_MS: "10000",
        }),
      ),
    );
  });
  afterAll(async () => {
    await Promise.all(servers.map((server) => server.kill("SIGTERM")));
    await sim?.stop();
  });

  /** `copies` duplicates of one request, alternating between the two servers, all at once. */
  async function race(apiKey: string, path: string, body: unknown, copies = 8) {
    const key = newKey();
    const answers = await Promise.all(
      Array.from({ length: copies }, (_, i) =>
        apiClient((servers[i % 2] as ServerProcess).url, apiKey).post(path, body, { key }),
      ),
    );
    const texts = await Promise.all(answers.map((res) => res.text()));
    return {
      statuses: answers.map((res) => res.status),
      texts,
      replayed: answers.map((res) => res.headers.get("idempotent-replayed")),
    };
  }

  it("orders, cancels, payments and refunds: identical answers, one effect each", async () => {
    const { apiKey, tenant } = await createTestTenant(db, "cross-node");
    const created = await race(apiKey, "/v1/orders", ORDER_BODY);
    expect(new Set(created.statuses)).toEqual(new Set([201]));
    expect(new Set(created.texts).size).toBe(1);
    expect(created.replayed.filter((r) => r === "false")).toHaveLength(1);
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });

    const order = JSON.parse(created.texts[0] as string);
    const cancelled = await race(apiKey, `/v1/orders/${order.id}/cancel`, undefined);
    expect(new Set(cancelled.statuses)).toEqual(new Set([200]));
    expect(new Set(cancelled.texts).size).toBe(1);
    expect(JSON.parse(cancelled.texts[0] as string).status).toBe("cancelled");

    const payable = await apiClient((servers[0] as ServerProcess).url, apiKey).post(
      "/v1/orders",
      PAYABLE_ORDER,
    );
    const orderId = (await payable.json()).id;
    const paid = await race(apiKey, "/v1/payments", {
      order_id: orderId,
      payment_method: "pm_card_visa",
    });
    expect(new Set(paid.statuses)).toEqual(new Set([201]));
    expect(new Set(paid.texts).size).toBe(1);
    const payment = JSON.parse(paid.texts[0] as string);
    expect(payment.status).toBe("succeeded");
    expect((await paymentRows(db, tenant.id)).payments).toBe(1);

    const refunded = await race(apiKey, "/v1/refunds", { payment_id: payment.id, amount: 1000 });
    expect(new Set(refunded.statuses)).toEqual(new Set([201]));
    expect(new Set(refunded.texts).size).toBe(1);
    expect((await paymentRows(db, tenant.id)).refunds).toBe(1);
    // One record per key, nothing in progress left behind.
    expect((await tenantRows(db, tenant.id)).keys).toBe(5);
  });
});
