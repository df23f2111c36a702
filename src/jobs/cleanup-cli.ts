import { parseArgs } from "node:util";
import { Presets, SingleBar } from "cli-progress";
import { ConfigError, loadConfig } from "../config.js";
import { openDatabase } from "../db/client.js";
import { migrateDatabase } from "../db/migrate.js";
import { resolveDatabase } from "../db/resolve.js";
import { type CleanupResult, runCleanup } from "../idempotency/index.js";
import { createLogger } from "../logger.js";
import { CLEANUP_RUN_LOCK } from "./cleanup-job.js";

const USAGE = "usage: npm run cleanup  (CLEANUP_BATCH_SIZE sets the records per batch)";

/**
 * `npm run cleanup`: deletes every expired idempotency record once and exits. A progress bar
 * goes to stderr when stderr is a terminal; the summary line goes to stdout always, so a cron
 * job's log keeps it. Exits 0 also when another runner holds the cleanup lock: that runner does
 * the work.
 */
async function main() {
  const { values } = parseArgs({ options: { help: { type: "boolean", short: "h" } } });
  if (values.help) {
    process.stderr.write(`${USAGE}\n`);
    return;
  }
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL, process.stderr);
  const database = await resolveDatabase(config, logger);
  try {
    if (config.MIGRATE_ON_START) await migrateDatabase(database.url);
    const handle = openDatabase(database.url, {
      max: 2,
      applicationName: "idempotent-payments-cleanup",
    });
    const bar = process.stderr.isTTY
      ? new SingleBar(
          {
            stream: process.stderr,
            format: "cleanup [{bar}] {percentage}% | {value}/{total} records | ETA {eta_formatted}",
            hideCursor: true,
          },
          Presets.shades_classic,
        )
      : undefined;
    // Ctrl-C stops after the batch in flight and still prints the summary.
    const controller = new AbortController();
    const abort = () => controller.abort();
    process.once("SIGINT", abort).once("SIGTERM", abort);
    let result: CleanupResult;
    try {
      result = await runCleanup(handle, {
        batchSize: config.CLEANUP_BATCH_SIZE,
        runLock: CLEANUP_RUN_LOCK,
        countFirst: bar !== undefined,
        signal: controller.signal,
        onProgress: ({ deleted, total = 0 }) => {
          if (!bar) return;
          if (deleted === 0) return bar.start(total, 0);
          // Records that expire during the run can make `deleted` outgrow the first count.
          if (deleted > bar.getTotal()) bar.setTotal(deleted);
          bar.update(deleted);
        },
      });
    } finally {
      bar?.stop();
      process.off("SIGINT", abort).off("SIGTERM", abort);
      await handle.close();
    }
    process.stdout.write(`${summary(result, database.description)}\n`);
  } finally {
    await database.stop();
  }
}

function summary(result: CleanupResult, database: string): string {
  if (result.status === "skipped") {
    return `cleanup skipped: another runner holds the cleanup lock on ${database}`;
  }
  const seconds = result.durationMs / 1000;
  const rate = seconds > 0 ? Math.round(result.deleted / seconds) : 0;
  return (
    `cleanup ${result.status}: deleted ${result.deleted} expired records in ${result.batches} ` +
    `batches, ${seconds.toFixed(2)} s (${rate} records/s) on ${database}`
  );
}

main().catch((error: unknown) => {
  process.stderr.write(
    error instanceof ConfigError ? `${error.message}\n` : `cleanup failed: ${String(error)}\n`,
  );
  process.exitCode = 1;
});
