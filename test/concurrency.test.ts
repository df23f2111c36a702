import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  apiClient,
  createTestTenant,
  holdTenantRow,
  newKey,
  ORDER_BODY,
  tenantRows,
  useDatabase,
} from "./helpers/harness.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";

/** Real HTTP against real server processes sharing one database. */
const { db } = useDatabase();
const servers: ServerProcess[] = [];

beforeAll(async () => {
  const env = { DATABASE_URL: inject("databaseUrl") };
  servers.push(...(await Promise.all([startServer(env), startServer(env)])));
});
afterAll(async () => {
  await Promise.all(servers.map((server) => server.kill("SIGTERM")));
});

function server(i: number): ServerProcess {
  const s = servers[i];
  if (!s) throw new Error(`server ${i} did not start`);
  return s;
}

/** The servers' error log lines, to explain an unexpected status. */
function serverErrors(): string {
  return servers.flatMap((s) => s.output.filter((line) => line.includes('"level":50'))).join("\n");
}

async function burst(urls: string[], apiKey: string, key: string, n: number) {
  const responses = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      apiClient(urls[i % urls.length] as string, apiKey).post("/v1/orders", ORDER_BODY, { key }),
    ),
  );
  return Promise.all(
    responses.map(async (res) => ({
      status: res.status,
      replayed: res.headers.get("idempotent-replayed"),
      body: await res.text(),
    })),
  );
}

describe("simultaneous duplicates", () => {
  it("50 identical requests with one key make one order and 50 identical answers", async () => {
    const { apiKey, tenant } = await createTestTenant(db, "burst");
    const answers = await burst([server(0).url], apiKey, newKey(), 50);
    expect(
      answers.map((a) => a.status),
      serverErrors(),
    ).toEqual(Array(50).fill(201));
    expect(new Set(answers.map((a) => a.body)).size).toBe(1);
    expect(answers.filter((a) => a.replayed === "false")).toHaveLength(1);
    expect(answers.filter((a) => a.replayed === "true")).toHaveLength(49);
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
  });

  it("duplicates spread over two server processes still make exactly one order", async () => {
    const { apiKey, tenant } = await createTestTenant(db, "two-servers");
    for (let round = 0; round < 5; round++) {
      const answers = await burst([server(0).url, server(1).url], apiKey, newKey(), 20);
      expect(
        answers.map((a) => a.status),
        serverErrors(),
      ).toEqual(Array(20).fill(201));
      expect(new Set(answers.map((a) => a.body)).size).toBe(1);
      expect(answers.filter((a) => a.replayed === "false")).toHaveLength(1);
    }
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 5, items: 10, keys: 5 });
  });
});

describe("a duplicate of a request still in flight", () => {
  it("waits for it and replays its answer", async () => {
    const { apiKey, tenant } = await createTestTenant(db, "inflight");
    const api = apiClient(server(0).url, apiKey);
    const key = newKey();
    const hold = await holdTenantRow(db, tenant.id);
    const first = api.post("/v1/orders", ORDER_BODY, { key });
    await hold.blocked(1);
    const duplicate = api.post("/v1/orders", ORDER_BODY, { key });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await hold.release();
    const [a, b] = await Promise.all([first, duplicate]);
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(a.headers.get("idempotent-replayed")).toBe("false");
    expect(b.headers.get("idempotent-replayed")).toBe("true");
    expect(await b.text()).toBe(await a.text());
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
  });

  it("gets 409 idempotency_key_in_progress with Retry-After when the wait runs out", async () => {
    const impatient = await startServer({
      DATABASE_URL: inject("databaseUrl"),
      IDEMPOTENCY_WAIT_MS: "300",
    });
    try {
      const { apiKey, tenant } = await createTestTenant(db, "impatient");
      const api = apiClient(impatient.url, apiKey);
      const key = newKey();
      const hold = await holdTenantRow(db, tenant.id);
      const first = api.post("/v1/orders", ORDER_BODY, { key });
      await hold.blocked(1);
      const started = Date.now();
      const duplicate = await api.post("/v1/orders", ORDER_BODY, { key });
      const waited = Date.now() - started;
      expect(duplicate.status).toBe(409);
      expect(duplicate.headers.get("retry-after")).toBe("1");
      expect(duplicate.headers.get("content-type")).toBe("application/problem+json");
      expect((await duplicate.json()).code).toBe("idempotency_key_in_progress");
      expect(waited).toBeGreaterThanOrEqual(290);
      expect(await tenantRows(db, tenant.id)).toEqual({ orders: 0, items: 0, keys: 0 });
      await hold.release();
      expect((await first).status).toBe(201);
      const retry = await api.post("/v1/orders", ORDER_BODY, { key });
      expect(retry.headers.get("idempotent-replayed")).toBe("true");
      expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
    } finally {
      await impatient.kill("SIGTERM");
    }
  });
});
