import { count, lt, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { idempotencyKeys, orders } from "../src/db/schema.js";
import { apiClient, createTestTenant, newKey, ORDER_BODY } from "./helpers/harness.js";
import { PAYABLE_ORDER, recordOf } from "./helpers/payments.js";
import { usePrivateDatabase } from "./helpers/private-database.js";
import { sample } from "./helpers/prometheus.js";
import { startServer } from "./helpers/server-process.js";
import { startSimulator } from "./helpers/simulator-process.js";

/**
 * The server as it runs in production, for longer than every default timer: the pool's idle
 * timeout (60 s), the cleanup interval (60 s, its default, spelled out because the test
 * helper turns cleanup off for the shared database) and the completer's. Before the driver fix,
 * the cleanup's second run never came and SIGTERM never ended the process.
 */
const SOAK_MS = 155_000;
const TTL_MS = 5_000;
const SHUTDOWN_TIMEOUT_MS = 10_000; // the default

describe("a server left running with its default timers", () => {
  const database = usePrivateDatabase("soak");

  it(
    "cleans up in every interval, completes an abandoned payment, stays small, stops on SIGTERM",
    async () => {
      const { db } = database.handle;
      const { apiKey, tenant } = await createTestTenant(db, "soak");
      const sim = await startSimulator();
      const server = await startServer({
        DATABASE_URL: database.url,
        STRIPE_API_URL: sim.url,
        CLEANUP_INTERVAL_MS: "60000",
        IDEMPOTENCY_TTL_MS: String(TTL_MS),
      });
      const started = Date.now();
      const api = apiClient(server.url, apiKey);
      const metrics = async () => (await fetch(`${server.url}/metrics`)).text();
      const rssAtStart = sample(await metrics(), "process_resident_memory_bytes");

      // A payment whose client gives up: the charge is made, both of its responses are lost
      // (the SDK's retry too), the client gets a 503 and never comes back. The default lease
      // (30 s) and grace (10 s) then hand it to the in-process completer (every 10 s).
      const orderId = (await (await api.post("/v1/orders", PAYABLE_ORDER)).json()).id as string;
      const paymentKey = newKey();
      await sim.control.setFaults({ lose_response: 2, path_prefix: "/v1/payment_intents" });
      const abandoned = await api.post(
        "/v1/payments",
        { order_id: orderId, payment_method: "pm_card_visa" },
        { key: paymentKey },
      );
      expect(abandoned.status).toBe(503);
      expect(await recordOf(db, tenant.id, paymentKey)).toMatchObject({ responseStatus: null });
      await sim.control.clearFaults();
      let created = 1; // the order paid above
      // Traffic in bursts with idle stretches between them, so the pool's connections go idle
      // and are closed by its timeout while the jobs keep their schedule.
      const burst = async (n: number) => {
        for (let i = 0; i < n; i++) {
          const res = await api.post("/v1/orders", ORDER_BODY, { key: newKey() });
          expect(res.status).toBe(201);
          created++;
        }
      };
      const until = (ms: number) =>
        new Promise((resolve) => setTimeout(resolve, Math.max(0, started + ms - Date.now())));
      try {
        await burst(200);
        await until(75_000); // idle across the first idle timeout and the second cleanup run
        // The completer finished the abandoned payment meanwhile, with the one charge made (its
        // record, finished and then expired, may already be cleaned up).
        const [paid] = await db.execute<{ payment: string; order: string }>(sql`
          SELECT p.status AS payment, o.status AS order
          FROM payments p JOIN orders o ON o.tenant_id = p.tenant_id AND o.id = p.order_id
          WHERE p.tenant_id = ${tenant.id}`);
        expect(paid).toEqual({ payment: "succeeded", order: "paid" });
        expect(await sim.control.charges({ metadata: { order_id: orderId } })).toHaveLength(1);
        await burst(200);
        await until(SOAK_MS);

        const text = await metrics();
        const completedRuns = sample(text, "idempotency_cleanup_runs_total", {
          status: "completed",
        });
        const failedRuns = sample(text, "idempotency_cleanup_runs_total", { status: "failed" });
        // Runs at 0 s, ~60 s and ~120 s: one in every interval.
        expect(completedRuns).toBeGreaterThanOrEqual(3);
        expect(failedRuns).toBe(0);
        const lastSuccess = sample(text, "idempotency_cleanup_last_success_timestamp_seconds");
        expect(Date.now() / 1000 - lastSuccess).toBeLessThan(61);
        // Every record that had expired when the last run began is gone; the orders stay.
        const expiredBeforeLastRun = new Date((lastSuccess - 1) * 1000);
        const [left] = await db
          .select({ n: count() })
          .from(idempotencyKeys)
          .where(lt(idempotencyKeys.expiresAt, expiredBeforeLastRun));
        expect(left?.n).toBe(0);
        const [orderCount] = await db
          .select({ n: count() })
          .from(orders)
          .where(sql`${orders.tenantId} = ${tenant.id}`);
        expect(orderCount?.n).toBe(created);
        const deleted = sample(text, "idempotency_cleanup_deleted_total");
        expect(deleted).toBeGreaterThanOrEqual(400);

        // The completer ran every 10 s all along, and took on the abandoned payment once.
        const completerRuns = sample(text, "completer_runs_total", { status: "completed" });
        expect(completerRuns).toBeGreaterThanOrEqual(SOAK_MS / 10_000 - 2);
        expect(sample(text, "completer_runs_total", { status: "failed" })).toBe(0);
        expect(sample(text, "completer_records_total", { outcome: "finished" })).toBe(1);
        const completerLast = sample(text, "completer_last_success_timestamp_seconds");
        expect(Date.now() / 1000 - completerLast).toBeLessThan(11);

        const rssAtEnd = sample(text, "process_resident_memory_bytes");
        expect(rssAtEnd).toBeLessThan(Math.max(2 * rssAtStart, 300 * 1024 * 1024));
        console.info(
          `[soak] ${completedRuns} cleanup runs, ${deleted} deleted, ${completerRuns} completer runs, RSS ${Math.round(rssAtStart / 1e6)} → ${Math.round(rssAtEnd / 1e6)} MB`,
        );
      } catch (error) {
        // What the server said last, when it stopped answering or answered wrong.
        console.info(`[soak] server output, last lines:\n${server.output.slice(-60).join("\n")}`);
        throw error;
      } finally {
        const stopping = Date.now();
        const code = await server.kill("SIGTERM");
        const took = Date.now() - stopping;
        console.info(`[soak] SIGTERM → exit ${code} in ${took} ms`);
        await sim.stop();
        expect(code).toBe(0);
        expect(took).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
      }
    },
    SOAK_MS + 60_000,
  );
});
