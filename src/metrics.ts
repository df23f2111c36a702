import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { PoolStats } from "./db/client.js";
import type { CleanupResult, IdempotencyEvent, IdempotencyOutcome } from "./idempotency/index.js";

/** Every idempotency outcome, so each series exists (at 0) from the first scrape on. */
const IDEMPOTENCY_OUTCOMES: Record<IdempotencyOutcome, true> = {
  executed: true,
  replayed: true,
  mismatched: true,
  in_progress: true,
  not_stored: true,
};

const CLEANUP_STATUSES = ["completed", "skipped", "aborted", "failed"] as const;
export type CleanupStatus = (typeof CLEANUP_STATUSES)[number];

const COMPLETER_STATUSES = ["completed", "failed"] as const;
const COMPLETER_OUTCOMES = ["finished", "left"] as const;

/**
 * Request latency buckets in seconds: from a replay answered in a millisecond to a request that
 * waited out `IDEMPOTENCY_WAIT_MS` (5 s by default) for a concurrent duplicate.
 */
const REQUEST_SECONDS_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
/** Cleanup run buckets in seconds: an idle run takes milliseconds, a backlog of millions minutes. */
const CLEANUP_SECONDS_BUCKETS = [0.01, 0.05, 0.25, 1, 5, 15, 60, 300, 900];

export interface MetricsOptions {
  /** Node.js process metrics (CPU, memory, event loop lag, GC, handles). Default false. */
  processMetrics?: boolean;
  /** Read on every scrape for the `db_pool_*` gauges; without it they are not registered. */
  poolStats?: () => PoolStats;
}

/**
 * The Prometheus registry of one app instance and the typed ways to feed it. A registry per
 * instance, never prom-client's global one, so tests can build several apps in one process and
 * read each one's numbers alone. `registry.metrics()` is what `/metrics` serves.
 */
export function createMetrics(options: MetricsOptions = {}) {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const httpRequests = new Counter({
    name: "http_requests_total",
    help: "HTTP requests answered, by method, route pattern and status.",
    labelNames: ["method", "route", "status"] as const,
    registers,
  });
  const httpDuration = new Histogram({
    name: "http_request_duration_seconds",
    help: "Time from receiving a request to its response being ready, by method and route.",
    labelNames: ["method", "route"] as const,
    buckets: REQUEST_SECONDS_BUCKETS,
    registers,
  });
  const idempotencyRequests = new Counter({
    name: "idempotency_requests_total",
    help: "Requests with a valid Idempotency-Key, by outcome.",
    labelNames: ["outcome"] as const,
    registers,
  });
  const idempotencyWait = new Histogram({
    name: "idempotency_wait_seconds",
    help:
      "Time a request waited for a concurrent execution of the same key, by the outcome it " +
      "then got; only requests that waited are observed, so _count is the number that waited.",
    labelNames: ["outcome"] as const,
    buckets: REQUEST_SECONDS_BUCKETS,
    registers,
  });
  for (const outcome of Object.keys(IDEMPOTENCY_OUTCOMES)) {
    idempotencyRequests.inc({ outcome }, 0);
  }

  const cleanupDeleted = new Counter({
    name: "idempotency_cleanup_deleted_total",
    help: "Expired idempotency records deleted by the cleanup job of this process.",
    registers,
  });
  const cleanupRuns = new Counter({
    name: "idempotency_cleanup_runs_total",
    help:
      "Cleanup runs by status: completed, skipped (another process held the cleanup lock), " +
      "aborted (shutdown), failed.",
    labelNames: ["status"] as const,
    registers,
  });
  const cleanupDuration = new Histogram({
    name: "idempotency_cleanup_duration_seconds",
    help: "Duration of cleanup runs that held the lock (completed or aborted).",
    buckets: CLEANUP_SECONDS_BUCKETS,
    registers,
  });
  const cleanupLastSuccess = new Gauge({
    name: "idempotency_cleanup_last_success_timestamp_seconds",
    help: "Unix time of this process's last completed cleanup run; 0 before the first.",
    registers,
  });
  for (const status of CLEANUP_STATUSES) cleanupRuns.inc({ status }, 0);

  const completerRuns = new Counter({
    name: "completer_runs_total",
    help:
      "Runs of this process's completer job by status: completed (it went through the " +
      "abandoned records it found, whatever each one's outcome) or failed (it could not).",
    labelNames: ["status"] as const,
    registers,
  });
  const completerRecords = new Counter({
    name: "completer_records_total",
    help:
      "Abandoned payments and refunds the completer took on, by outcome: finished (driven to " +
      "their final response) or left (for a later run: provider unavailable, or taken by " +
      "someone else).",
    labelNames: ["outcome"] as const,
    registers,
  });
  const completerLastSuccess = new Gauge({
    name: "completer_last_success_timestamp_seconds",
    help: "Unix time of this process's last completed completer run; 0 before the first.",
    registers,
  });
  for (const status of COMPLETER_STATUSES) completerRuns.inc({ status }, 0);
  for (const outcome of COMPLETER_OUTCOMES) completerRecords.inc({ outcome }, 0);

  const { poolStats } = options;
  if (poolStats) {
    new Gauge({
      name: "db_pool_max_connections",
      help: "Configured size of the database connection pool (DATABASE_POOL_MAX).",
      registers,
      collect() {
        this.set(poolStats().max);
      },
    });
    new Gauge({
      name: "db_pool_active_transactions",
      help: "Transactions holding a pool connection now (each holds exactly one).",
      registers,
      collect() {
        this.set(poolStats().activeTransactions);
      },
    });
    new Gauge({
      name: "db_pool_waiting_transactions",
      help: "Transactions waiting for a free pool connection.",
      registers,
      collect() {
        this.set(poolStats().waitingTransactions);
      },
    });
  }

  return {
    registry,
    /** One answered HTTP request. */
    observeRequest(request: { method: string; route: string; status: number; seconds: number }) {
      httpRequests.inc({ method: request.method, route: request.route, status: request.status });
      httpDuration.observe({ method: request.method, route: request.route }, request.seconds);
    },
    /** One idempotency outcome, as the middleware reports it. */
    observeIdempotency(event: IdempotencyEvent) {
      idempotencyRequests.inc({ outcome: event.outcome });
      if (event.waitedMs > 0)
        idempotencyWait.observe({ outcome: event.outcome }, event.waitedMs / 1000);
    },
    /** Records deleted by one cleanup batch, counted as they go so a long run shows progress. */
    observeCleanupBatch(deleted: number) {
      cleanupDeleted.inc(deleted);
    },
    /** One cleanup run that returned. */
    observeCleanup(result: CleanupResult) {
      cleanupRuns.inc({ status: result.status });
      if (result.status === "skipped") return;
      cleanupDuration.observe(result.durationMs / 1000);
      if (result.status === "completed") cleanupLastSuccess.setToCurrentTime();
    },
    /** One cleanup run that threw. */
    observeCleanupFailure() {
      cleanupRuns.inc({ status: "failed" });
    },
    /** One completer run that returned. */
    observeCompleterRun(run: { completed: number; left: number }) {
      completerRuns.inc({ status: "completed" });
      completerRecords.inc({ outcome: "finished" }, run.completed);
      completerRecords.inc({ outcome: "left" }, run.left);
      completerLastSuccess.setToCurrentTime();
    },
    /** One completer run that threw. */
    observeCompleterFailure() {
      completerRuns.inc({ status: "failed" });
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
