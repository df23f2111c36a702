import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { openDatabase } from "../src/db/client.js";
import { createMetrics, type Metrics } from "../src/metrics.js";
import {
  apiClient,
  createTestTenant,
  holdTenantRow,
  newKey,
  ORDER_BODY,
  tenantRows,
  testApp,
} from "./helpers/harness.js";
import { sample } from "./helpers/prometheus.js";
import { REPO_ROOT } from "./helpers/server-process.js";

/**
 * `/metrics` as Prometheus reads it, after real requests: each test builds an app with a
 * registry of its own and asserts how the numbers moved.
 */
// The app's own application name, which `holdTenantRow(...).blocked` looks for.
const handle = openDatabase(inject("databaseUrl"), { max: 10 });
afterAll(() => handle.close());
const { db } = handle;

function appWithMetrics(metrics: Metrics = createMetrics(), waitMs = 5000) {
  const app = testApp(db, { IDEMPOTENCY_WAIT_MS: waitMs }, { metrics });
  return {
    app,
    async scrape() {
      const res = await app.request("/metrics");
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
      return res.text();
    },
  };
}

describe("GET /metrics", () => {
  it("counts requests by method, route pattern and status, and times them", async () => {
    const { app, scrape } = appWithMetrics();
    const { apiKey } = await createTestTenant(db, "metrics-http");
    const api = apiClient(app, apiKey);
    const order = await (await api.post("/v1/orders", ORDER_BODY)).json();
    await api.get(`/v1/orders/${order.id}`);
    await api.get("/v1/orders/ord_01aaaaaaaaaaaaaaaaaaaaaaaa");
    await app.request("/no/such/path/12345");
    await apiClient(app, "sk_wrong").get("/v1/orders");

    const text = await scrape();
    const requests = (labels: Record<string, string>) =>
      sample(text, "http_requests_total", labels);
    expect(requests({ method: "POST", route: "/v1/orders", status: "201" })).toBe(1);
    expect(requests({ method: "GET", route: "/v1/orders/:id", status: "200" })).toBe(1);
    expect(requests({ method: "GET", route: "/v1/orders/:id", status: "404" })).toBe(1);
    expect(requests({ method: "GET", route: "/v1/orders", status: "401" })).toBe(1);
    // Paths nobody routes share one label, whatever a client sends.
    expect(requests({ route: "unmatched", status: "404" })).toBe(1);
    expect(text).not.toContain("/no/such/path");
    expect(text).not.toContain(order.id);
    expect(
      sample(text, "http_request_duration_seconds_count", { method: "POST", route: "/v1/orders" }),
    ).toBe(1);
    expect(
      sample(text, "http_request_duration_seconds_sum", { method: "POST", route: "/v1/orders" }),
    ).toBeGreaterThan(0);
  });

  it("counts each idempotency outcome: executed, replayed, mismatched, not stored", async () => {
    const { app, scrape } = appWithMetrics();
    const { apiKey } = await createTestTenant(db, "metrics-idem");
    const api = apiClient(app, apiKey);
    const outcomes = async () => {
      const text = await scrape();
      return Object.fromEntries(
        ["executed", "replayed", "mismatched", "in_progress", "not_stored"].map((outcome) => [
          outcome,
          sample(text, "idempotency_requests_total", { outcome }),
        ]),
      );
    };
    // Every series is there from the start, so rate() has a zero to begin from.
    expect(await outcomes()).toEqual({
      executed: 0,
      replayed: 0,
      mismatched: 0,
      in_progress: 0,
      not_stored: 0,
    });
    const key = newKey();
    await api.post("/v1/orders", ORDER_BODY, { key });
    expect(await outcomes()).toMatchObject({ executed: 1, replayed: 0 });
    await api.post("/v1/orders", ORDER_BODY, { key });
    await api.post("/v1/orders", ORDER_BODY, { key });
    expect(await outcomes()).toMatchObject({ executed: 1, replayed: 2 });
    expect((await api.post("/v1/orders", { ...ORDER_BODY, currency: "USD" }, { key })).status).toBe(
      422,
    );
    expect((await api.post("/v1/orders", { ...ORDER_BODY, items: [] })).status).toBe(400);
    // A request without a key has no idempotency outcome at all.
    await api.post("/v1/orders", ORDER_BODY, { key: null });
    expect(await outcomes()).toEqual({
      executed: 1,
      replayed: 2,
      mismatched: 1,
      in_progress: 0,
      not_stored: 1,
    });
    expect(sample(await scrape(), "idempotency_wait_seconds_count")).toBe(0);
  });

  it("times a duplicate that waited for the first, by the outcome it then got", async () => {
    const { app, scrape } = appWithMetrics();
    const { apiKey, tenant } = await createTestTenant(db, "metrics-wait");
    const api = apiClient(app, apiKey);
    const key = newKey();
    const hold = await holdTenantRow(db, tenant.id);
    const first = api.post("/v1/orders", ORDER_BODY, { key });
    await hold.blocked(1);
    const duplicate = api.post("/v1/orders", ORDER_BODY, { key });
    await hold.blocked(2);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await hold.release();
    const [a, b] = await Promise.all([first, duplicate]);
    expect([a.status, b.headers.get("idempotent-replayed")]).toEqual([201, "true"]);

    const text = await scrape();
    expect(sample(text, "idempotency_wait_seconds_count", { outcome: "replayed" })).toBe(1);
    expect(sample(text, "idempotency_wait_seconds_sum", { outcome: "replayed" })).toBeGreaterThan(
      0.25,
    );
    expect(sample(text, "idempotency_wait_seconds_count")).toBe(1);
    expect(sample(text, "idempotency_requests_total", { outcome: "replayed" })).toBe(1);
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
  });

  it("counts a duplicate that gave up waiting as in progress, with the time it waited", async () => {
    const { app, scrape } = appWithMetrics(createMetrics(), 200);
    const { apiKey, tenant } = await createTestTenant(db, "metrics-409");
    const api = apiClient(app, apiKey);
    const key = newKey();
    const hold = await holdTenantRow(db, tenant.id);
    const first = api.post("/v1/orders", ORDER_BODY, { key });
    await hold.blocked(1);
    expect((await api.post("/v1/orders", ORDER_BODY, { key })).status).toBe(409);
    await hold.release();
    expect((await first).status).toBe(201);

    const text = await scrape();
    expect(sample(text, "idempotency_requests_total", { outcome: "in_progress" })).toBe(1);
    expect(sample(text, "idempotency_wait_seconds_count", { outcome: "in_progress" })).toBe(1);
    expect(sample(text, "idempotency_wait_seconds_sum", { outcome: "in_progress" })).toBe(0.2);
  });

  it("reports the pool: its size, transactions holding a connection, transactions waiting", async () => {
    const small = openDatabase(inject("databaseUrl"), { max: 2, applicationName: "vitest" });
    try {
      const { scrape } = appWithMetrics(createMetrics({ poolStats: small.poolStats }));
      const pool = (text: string) => ({
        max: sample(text, "db_pool_max_connections"),
        active: sample(text, "db_pool_active_transactions"),
        waiting: sample(text, "db_pool_waiting_transactions"),
      });
      expect(pool(await scrape())).toEqual({ max: 2, active: 0, waiting: 0 });

      let release: () => void = () => {};
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      const entered: Promise<void>[] = [];
      const transactions = [1, 2, 3].map((i) => {
        let enter: () => void = () => {};
        entered.push(new Promise<void>((resolve) => (enter = resolve)));
        return small.db.transaction(async () => {
          enter();
          if (i <= 2) await released;
        });
      });
      await Promise.all(entered.slice(0, 2));
      expect(pool(await scrape())).toEqual({ max: 2, active: 2, waiting: 1 });
      release();
      await Promise.all(transactions);
      expect(pool(await scrape())).toEqual({ max: 2, active: 0, waiting: 0 });
    } finally {
      await small.close();
    }
  });

  it("counts a transaction that failed to start as waiting no more", async () => {
    const missing = new URL(inject("databaseUrl"));
    missing.pathname = "/no_such_database_for_metrics";
    const broken = openDatabase(missing.toString(), { max: 1 });
    try {
      await expect(broken.db.transaction(async () => {})).rejects.toThrow();
      expect(broken.poolStats()).toEqual({ max: 1, activeTransactions: 0, waitingTransactions: 0 });
    } finally {
      await broken.close();
    }
  });

  it("has the Node.js process metrics when asked for them", async () => {
    const { scrape } = appWithMetrics(createMetrics({ processMetrics: true }));
    // prom-client counts CPU from the moment the metrics were created, and the kernel
    // accounts it in ticks: spend a measurable amount first, or the counter may read 0.
    const start = process.cpuUsage().user;
    while (process.cpuUsage().user - start < 30_000) Math.sqrt(Math.random());
    const text = await scrape();
    expect(sample(text, "process_cpu_user_seconds_total")).toBeGreaterThanOrEqual(0.02);
    expect(sample(text, "process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(text).toContain("nodejs_eventloop_lag_seconds");
    const { scrape: plain } = appWithMetrics();
    expect(await plain()).not.toContain("process_cpu_user_seconds_total");
  });

  it("keeps one registry per app: requests to one never show in another", async () => {
    const one = appWithMetrics();
    const other = appWithMetrics();
    await one.app.request("/healthz");
    await one.app.request("/healthz");
    expect(sample(await one.scrape(), "http_requests_total", { route: "/healthz" })).toBe(2);
    expect(sample(await other.scrape(), "http_requests_total", { route: "/healthz" })).toBe(0);
  });
});

describe("docs/operations.md", () => {
  it("documents every metric /metrics serves, besides prom-client's process defaults", async () => {
    const metrics = createMetrics({
      processMetrics: true,
      poolStats: () => ({ max: 1, activeTransactions: 0, waitingTransactions: 0 }),
    });
    const served = (await metrics.registry.getMetricsAsJSON())
      .map((metric) => metric.name)
      .filter((name) => !name.startsWith("process_") && !name.startsWith("nodejs_"));
    const docs = readFileSync(join(REPO_ROOT, "docs/operations.md"), "utf8");
    const documented = [...docs.matchAll(/^\|\s*`([a-z][a-z0-9_]+)`\s*\|/gm)].map((m) => m[1]);
    expect(served.length).toBeGreaterThan(10);
    expect(served.filter((name) => !documented.includes(name))).toEqual([]);
  });
});
