import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { apiClient, newKey, ORDER_BODY } from "./helpers/harness.js";
import { startServer } from "./helpers/server-process.js";

/**
 * The zero-configuration path a new user gets from `npm start`: no DATABASE_URL, so the
 * server runs its own embedded PostgreSQL under DATA_DIR. Runs whatever database the rest of
 * the suite uses.
 */
const dataDir = mkdtempSync(join(tmpdir(), "idempotent-payments-embedded-"));
chmodSync(dataDir, 0o755);
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const zeroConfig = { DATABASE_URL: "", DATA_DIR: dataDir, MIGRATE_ON_START: "true" };

function postmasters(): number {
  const out = execFileSync("ps", ["-eo", "args"], { encoding: "utf8" });
  return out.split("\n").filter((line) => line.includes(join(dataDir, "postgres"))).length;
}

describe("npm start without DATABASE_URL", () => {
  it("runs on embedded PostgreSQL, survives a SIGKILL and a restart, and stops it on SIGTERM", async () => {
    const first = await startServer(zeroConfig);
    const apiKey = readFileSync(join(dataDir, "demo-api-key"), "utf8").trim();
    expect(await first.waitForOutput("Demo API key:")).toContain(apiKey);
    expect(await first.waitForOutput("Database:")).toContain("embedded PostgreSQL");

    const key = newKey();
    const created = await apiClient(first.url, apiKey).post("/v1/orders", ORDER_BODY, { key });
    expect(created.status).toBe(201);
    const order = await created.json();

    // A killed server leaves its postmaster behind; the next start must clean it up.
    await first.kill("SIGKILL");
    expect(postmasters()).toBe(1);

    const second = await startServer(zeroConfig);
    try {
      expect(await second.waitForOutput("Demo API key:")).toContain(apiKey);
      const api = apiClient(second.url, apiKey);
      const fetched = await api.get(`/v1/orders/${order.id}`);
      expect(fetched.status).toBe(200);
      const replay = await api.post("/v1/orders", ORDER_BODY, { key });
      expect(replay.headers.get("idempotent-replayed")).toBe("true");
      expect((await replay.json()).id).toBe(order.id);
      expect(postmasters()).toBe(1);
    } finally {
      expect(await second.kill("SIGTERM")).toBe(0);
    }
    expect(postmasters()).toBe(0);
    expect(existsSync(join(dataDir, "postgres", "postmaster.pid"))).toBe(false);
  });
});
