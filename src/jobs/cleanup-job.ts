import type { DatabaseHandle } from "../db/client.js";
import { ADVISORY_LOCK_NAMESPACE, JOB_LOCKS } from "../db/locks.js";
import { runCleanup } from "../idempotency/index.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";

/** The app's cleanup lock, among its other jobs' locks. */
export const CLEANUP_RUN_LOCK = { namespace: ADVISORY_LOCK_NAMESPACE, id: JOB_LOCKS.cleanup };

export interface CleanupJobOptions {
  /** A pool of at least two connections (see `runCleanup`). */
  database: Pick<DatabaseHandle, "db" | "client">;
  /** Time from the end of one run to the start of the next, in milliseconds; positive. */
  intervalMs: number;
  /** Records per delete statement. */
  batchSize: number;
  logger: Logger;
  metrics?: Metrics;
}

export interface CleanupJob {
  /** Stops scheduling, aborts a run in progress after its current batch, and waits for it. */
  stop(): Promise<void>;
}

/**
 * The server's retention job: runs the cleanup at once, then `intervalMs` after each run ends,
 * so runs of one process never overlap (and the advisory lock keeps runs of different
 * processes apart). A run's failure is logged and counted; the next run comes as usual.
 */
export function startCleanupJob(options: CleanupJobOptions): CleanupJob {
  if (!(options.intervalMs > 0)) {
    throw new Error(`cleanup interval must be positive, got ${options.intervalMs} ms`);
  }
  const { logger, metrics } = options;
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  async function runOnce() {
    let counted = 0;
    try {
      const result = await runCleanup(options.database, {
        batchSize: options.batchSize,
        runLock: CLEANUP_RUN_LOCK,
        signal: controller.signal,
        onProgress: ({ deleted }) => {
          metrics?.observeCleanupBatch(deleted - counted);
          counted = deleted;
        },
      });
      metrics?.observeCleanup(result);
      const fields = {
        status: result.status,
        deleted: result.deleted,
        batches: result.batches,
        duration_ms: Math.round(result.durationMs),
      };
      if (result.deleted > 0) logger.info(fields, "cleanup");
      else logger.debug(fields, "cleanup");
    } catch (error) {
      metrics?.observeCleanupFailure();
      logger.error({ err: error, deleted: counted }, "cleanup failed");
    }
  }

  function schedule(delayMs: number) {
    timer = setTimeout(() => {
      running = runOnce().finally(() => {
        running = undefined;
        if (!controller.signal.aborted) schedule(options.intervalMs);
      });
    }, delayMs);
  }
  schedule(0);

  return {
    async stop() {
      controller.abort();
      clearTimeout(timer);
      await running;
    },
  };
}
