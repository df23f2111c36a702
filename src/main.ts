import type { AddressInfo } from "node:net";
import { createApp } from "./app.js";
import { ConfigError, loadConfig } from "./config.js";
import { openDatabase } from "./db/client.js";
import { migrateDatabase } from "./db/migrate.js";
import { resolveDatabase } from "./db/resolve.js";
import { serveApp } from "./http/node-server.js";
import { startCleanupJob } from "./jobs/cleanup-job.js";
import { startCompleter } from "./jobs/completer.js";
import { createLogger } from "./logger.js";
import { createMetrics } from "./metrics.js";
import { resolveProvider } from "./provider/resolve.js";
import { ensureDemoTenant } from "./tenants/demo.js";

/** The process: config → database → app → server, then graceful shutdown on SIGTERM/SIGINT. */
async function main() {
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL);

  const database = await resolveDatabase(config, logger);
  if (config.MIGRATE_ON_START) await migrateDatabase(database.url);
  const { db, close, poolStats } = openDatabase(database.url, { max: config.DATABASE_POOL_MAX });
  const demoApiKey = await ensureDemoTenant(db, config);
  const metrics = createMetrics({ processMetrics: true, poolStats });

  const payments = await resolveProvider(config, logger);

  let shuttingDown = false;
  const app = createApp({
    db,
    config,
    logger,
    metrics,
    provider: payments.provider,
    isShuttingDown: () => shuttingDown,
  });
  const server = serveApp({
    fetch: app.fetch,
    port: config.PORT,
    hostname: config.HOST,
    logger,
    metrics,
  });
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://${config.HOST}:${port}`;
  await payments.setWebhookUrl(`http://127.0.0.1:${port}/v1/webhooks/stripe`);
  const stopCompleter =
    config.COMPLETER_INTERVAL_MS > 0
      ? startCompleter(
          {
            db,
            provider: payments.provider,
            logger,
            leaseMs: config.PAYMENT_LEASE_MS,
            ttlMs: config.IDEMPOTENCY_TTL_MS,
            graceMs: config.COMPLETER_GRACE_MS,
          },
          config.COMPLETER_INTERVAL_MS,
          metrics,
        )
      : async () => {};
  logger.info(
    { url: baseUrl, database: database.description, payments: payments.description },
    "listening",
  );
  process.stderr.write(banner(baseUrl, database.description, payments.description, demoApiKey));

  // The cleanup job has a pool of its own: a run holds one connection for its lock and one for
  // its batches, which then never wait behind (or take a connection from) request traffic.
  const jobDatabase =
    config.CLEANUP_INTERVAL_MS > 0
      ? openDatabase(database.url, { max: 2, applicationName: "idempotent-payments-cleanup" })
      : undefined;
  const cleanup = jobDatabase
    ? startCleanupJob({
        database: jobDatabase,
        intervalMs: config.CLEANUP_INTERVAL_MS,
        batchSize: config.CLEANUP_BATCH_SIZE,
        logger,
        metrics,
      })
    : undefined;

  async function shutdown(signal: string) {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info({ signal }, "shutting down: finishing in-flight requests");
    // Nothing may keep the process: whatever still runs when the deadline passes is named in
    // the log and abandoned, and the exit code says the shutdown was not clean.
    const pending = new Set<string>(["requests", "jobs", "database pool", "payments", "database"]);
    const deadline = setTimeout(() => {
      logger.error({ stuck: [...pending] }, "shutdown timed out: abandoning what is left");
      process.exit(1);
    }, config.SHUTDOWN_TIMEOUT_MS);
    deadline.unref();
    const done = (name: string) => pending.delete(name);
    // Requests get most of the budget; the rest is for closing the pool and the databases.
    const forced = setTimeout(
      () => {
        logger.warn("shutdown: requests still open, closing their connections");
        server.closeAllConnections();
      },
      Math.max(1, config.SHUTDOWN_TIMEOUT_MS - 2000),
    );
    // close() stops accepting and waits for open connections; a keep-alive connection whose
    // request finishes during the drain goes idle and is closed on the next sweep.
    const sweep = setInterval(() => server.closeIdleConnections(), 50);
    // The job stops after its batch in flight, while requests drain, and before its pool closes.
    const jobStopped = cleanup?.stop().then(() => jobDatabase?.close());
    await new Promise<void>((resolve) => server.close(() => resolve()));
    done("requests");
    clearInterval(sweep);
    clearTimeout(forced);
    await stopCompleter();
    await jobStopped;
    done("jobs");
    await close();
    done("database pool");
    await payments.stop();
    done("payments");
    await database.stop();
    done("database");
    clearTimeout(deadline);
    logger.info("stopped");
  }
  let signalledAt = 0;
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      if (shuttingDown) {
        // Ctrl-C under `npm start` arrives twice at once: from the terminal to the whole
        // process group, and relayed by npm. Only a later one means "stop now".
        if (Date.now() - signalledAt < 1000) return;
        logger.warn({ signal }, "second signal: exiting now");
        process.exit(1);
      }
      signalledAt = Date.now();
      shutdown(signal).then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: error }, "shutdown failed");
          process.exit(1);
        },
      );
    });
  }
}

function banner(
  url: string,
  database: string,
  payments: string,
  demoApiKey: string | undefined,
): string {
  const lines = [
    "",
    `  Idempotent Payments API on ${url}`,
    `  Database: ${database}`,
    `  Payments: ${payments}`,
    `  API reference: ${url}/docs   OpenAPI: ${url}/openapi.json`,
  ];
  if (demoApiKey) {
    lines.push(
      `  Demo API key: ${demoApiKey}`,
      "",
      "  Try it (run it twice: the second answer is the stored one, Idempotent-Replayed: true):",
      `    curl -i ${url}/v1/orders -H "Authorization: Bearer ${demoApiKey}" \\`,
      '      -H "Idempotency-Key: my-first-order-0001" \\',
      `      -H "Content-Type: application/json" \\`,
      `      -d '{"currency":"EUR","items":[{"sku":"TSHIRT","name":"T-shirt","quantity":2,"unit_amount":1500}]}'`,
    );
  }
  return `${lines.join("\n")}\n\n`;
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`);
  } else if ((error as NodeJS.ErrnoException).code === "EADDRINUSE") {
    const { address, port } = error as { address?: string; port?: number };
    process.stderr.write(
      `Failed to start: ${address}:${port} is already in use. Stop the process listening there, ` +
        "or set PORT to another port (PORT=0 picks a free one).\n",
    );
  } else {
    process.stderr.write(
      `Failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
  }
  process.exit(1);
});
