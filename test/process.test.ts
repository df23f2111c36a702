import { execFile } from "node:child_process";
import { describe, expect, inject, it } from "vitest";
import {
  apiClient,
  createTestTenant,
  holdTenantRow,
  newKey,
  ORDER_BODY,
  tenantRows,
  useDatabase,
} from "./helpers/harness.js";
import { REPO_ROOT, startServer } from "./helpers/server-process.js";

/** Real processes, real signals: what a crash or a deploy does to requests in flight. */
const { db } = useDatabase();
const env = () => ({ DATABASE_URL: inject("databaseUrl") });

describe("a server killed with SIGKILL in the middle of a request", () => {
  it("leaves nothing behind, and the retry after a restart creates exactly one order", async () => {
    const { apiKey, tenant } = await createTestTenant(db, "crash");
    const key = newKey();
    const victim = await startServer(env());
    const hold = await holdTenantRow(db, tenant.id);
    const inFlight = apiClient(victim.url, apiKey)
      .post("/v1/orders", ORDER_BODY, { key })
      .then(
        (res) => res.status,
        (error: unknown) => error,
      );
    await hold.blocked(1);
    expect(await victim.kill("SIGKILL")).toBeNull();
    expect(await inFlight).toBeInstanceOf(Error);
    await hold.release();
    // PostgreSQL aborted the dead connection's transaction: no order, no record.
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 0, items: 0, keys: 0 });

    const restarted = await startServer(env());
    try {
      const api = apiClient(restarted.url, apiKey);
      const retry = await api.post("/v1/orders", ORDER_BODY, { key });
      expect(retry.status).toBe(201);
      expect(retry.headers.get("idempotent-replayed")).toBe("false");
      const again = await api.post("/v1/orders", ORDER_BODY, { key });
      expect(again.headers.get("idempotent-replayed")).toBe("true");
      expect(await again.text()).toBe(await retry.text());
      expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
    } finally {
      await restarted.kill("SIGTERM");
    }
  });
});

describe("graceful shutdown", () => {
  it("finishes the request in flight on SIGTERM, then exits 0", async () => {
    const { apiKey, tenant } = await createTestTenant(db, "drain");
    const server = await startServer(env());
    const hold = await holdTenantRow(db, tenant.id);
    const inFlight = apiClient(server.url, apiKey).post("/v1/orders", ORDER_BODY);
    await hold.blocked(1);
    const exited = server.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 200));
    await hold.release();
    const res = await inFlight;
    expect(res.status).toBe(201);
    expect(await exited).toBe(0);
    expect(server.output.some((line) => line.includes('"msg":"stopped"'))).toBe(true);
    expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
  });

  it("refuses new connections once shutdown began", async () => {
    const server = await startServer(env());
    expect((await apiClient(server.url, null).get("/healthz")).status).toBe(200);
    expect(await server.kill("SIGTERM")).toBe(0);
    await expect(apiClient(server.url, null).get("/healthz")).rejects.toThrow();
  });
});

describe("starting on a port in use", () => {
  it("exits 1 and says which address is taken", async () => {
    const first = await startServer(env());
    try {
      const port = new URL(first.url).port;
      const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>(
        (resolve) => {
          execFile(
            process.execPath,
            ["--import", "tsx", "src/main.ts"],
            {
              cwd: REPO_ROOT,
              env: {
                ...process.env,
                ...env(),
                PORT: port,
                HOST: "127.0.0.1",
                MIGRATE_ON_START: "false",
              },
            },
            (error, _stdout, stderr) =>
              resolve({ code: error ? (error.code as number) : 0, stderr }),
          );
        },
      );
      expect(code).toBe(1);
      expect(stderr).toContain(`127.0.0.1:${port} is already in use`);
    } finally {
      await first.kill("SIGTERM");
    }
  });
});

describe("npm start under the signals people and supervisors send", () => {
  const pids = (args: string[]) =>
    new Promise<number[]>((resolve) =>
      execFile("pgrep", args, (_error, stdout) =>
        resolve(stdout.split("\n").filter(Boolean).map(Number)),
      ),
    );

  it.each([
    ["SIGTERM to the npm process (a supervisor, Docker's PID 1)", "npm"],
    ["SIGTERM to the node process", "node"],
    ["SIGINT to the whole process group (Ctrl-C)", "group"],
  ] as const)(
    "%s: the request in flight completes, exit 0, no process left",
    async (_l, target) => {
      const { apiKey, tenant } = await createTestTenant(db, "signals");
      const server = await startServer(env(), { viaNpm: true });
      const [node] = await pids(["-P", String(server.pid)]);
      expect(node).toBeGreaterThan(0);
      const hold = await holdTenantRow(db, tenant.id);
      const inFlight = apiClient(server.url, apiKey).post("/v1/orders", ORDER_BODY);
      await hold.blocked(1);
      const started = Date.now();
      if (target === "npm") process.kill(server.pid, "SIGTERM");
      if (target === "node") process.kill(node as number, "SIGTERM");
      if (target === "group") process.kill(-server.pid, "SIGINT");
      await new Promise((resolve) => setTimeout(resolve, 300));
      await hold.release();
      expect((await inFlight).status).toBe(201);
      expect(await server.kill("SIGCONT")).toBe(0); // waits for npm's exit; SIGCONT is harmless
      expect(Date.now() - started).toBeLessThan(15_000);
      // The group's last members (the bundled simulator) may take a moment after npm's exit.
      let left = await pids(["-g", String(server.pid)]);
      for (let i = 0; i < 30 && left.length > 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        left = await pids(["-g", String(server.pid)]);
      }
      expect(left).toEqual([]);
      expect(server.output.some((line) => line.includes('"msg":"stopped"'))).toBe(true);
      expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 2, keys: 1 });
    },
  );
});
