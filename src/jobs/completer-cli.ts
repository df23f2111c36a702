import { ConfigError, loadConfig } from "../config.js";
import { openDatabase } from "../db/client.js";
import { resolveDatabase } from "../db/resolve.js";
import { createLogger } from "../logger.js";
import { resolveProvider } from "../provider/resolve.js";
import { completeAbandoned } from "./completer.js";

/**
 * `npm run completer`: one run of the completer, then exit. Finishes the payments and refunds
 * whose clients never came back (see `completeAbandoned`); what it cannot finish yet (provider
 * still unavailable) is left for the next run and counted.
 */
async function main() {
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL, process.stderr);
  const database = await resolveDatabase(config, logger);
  const { db, close } = openDatabase(database.url, { max: 2 });
  const payments = await resolveProvider(config, logger);
  try {
    let total = { completed: 0, left: 0 };
    // One run takes a bounded batch; keep going while runs make progress.
    for (;;) {
      const run = await completeAbandoned({
        db,
        provider: payments.provider,
        logger,
        leaseMs: config.PAYMENT_LEASE_MS,
        ttlMs: config.IDEMPOTENCY_TTL_MS,
        graceMs: config.COMPLETER_GRACE_MS,
      });
      total = { completed: total.completed + run.completed, left: run.left };
      if (run.completed === 0) break;
    }
    process.stderr.write(
      `completer: ${total.completed} finished, ${total.left} left for a later run\n`,
    );
    if (total.left > 0) process.exitCode = 3;
  } finally {
    await close();
    await payments.stop();
    await database.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    error instanceof ConfigError ? `${error.message}\n` : `completer failed: ${String(error)}\n`,
  );
  process.exitCode = 1;
});
