import type { Database } from "../db/client.js";
import {
  Execution,
  findAbandonedRecords,
  KeyLockTimeout,
  type StoredResponse,
} from "../idempotency/index.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { type PaymentDeps, runCreatePayment } from "../payments/create-payment.js";
import type { PaymentProvider } from "../provider/stripe-provider.js";
import { runCreateRefund } from "../refunds/create-refund.js";

export interface CompleterDeps {
  db: Database;
  provider: PaymentProvider;
  logger: Logger;
  leaseMs: number;
  ttlMs: number;
  /**
   * How long after a lease ran out the completer leaves a record to its client's own retry
   * (the client got a 503 and `Retry-After`, or lost its connection) before finishing it.
   */
  graceMs: number;
}

/** How each multi-phase operation resumes, by the path its record was created for. */
const RESUMERS: Record<
  string,
  (execution: Execution, deps: PaymentDeps) => Promise<StoredResponse>
> = {
  "/v1/payments": (execution, deps) => runCreatePayment(execution, deps),
  "/v1/refunds": (execution, deps) => runCreateRefund(execution, deps),
};

/** Most records one run takes on, so a run stays short whatever the backlog. */
const BATCH = 100;

export interface CompleterRun {
  /** Records driven to their final response. */
  completed: number;
  /** Records left for a later run (provider still unavailable, or taken by someone else). */
  left: number;
}

/**
 * Finishes payments and refunds whose clients never came back: records stopped between phases
 * (money may already have moved at the provider) whose lease ran out at least `graceMs` ago.
 * Each is taken over like a client retry would (the attempt counter fences off any straggler)
 * and resumed with the same provider idempotency key, so nothing happens twice. Several
 * completers may run at once: a record another one holds is skipped.
 */
export async function completeAbandoned(deps: CompleterDeps): Promise<CompleterRun> {
  const run: CompleterRun = { completed: 0, left: 0 };
  for (const record of await findAbandonedRecords(deps.db, deps.graceMs, BATCH)) {
    const resume = RESUMERS[record.path];
    if (!resume) {
      deps.logger.error({ path: record.path }, "completer: no resumer for this path");
      run.left++;
      continue;
    }
    let execution: Execution | undefined;
    try {
      execution = await Execution.takeOverAbandoned(deps.db, record, deps.graceMs, {
        leaseMs: deps.leaseMs,
        ttlMs: deps.ttlMs,
        requestId: "completer",
      });
    } catch (error) {
      if (!(error instanceof KeyLockTimeout)) throw error;
    }
    if (!execution) {
      run.left++;
      continue;
    }
    try {
      const response = await resume(execution, deps);
      run.completed++;
      deps.logger.info(
        { tenant_id: record.tenantId, path: record.path, status: response.status },
        "completer: finished an abandoned request",
      );
    } catch (error) {
      run.left++;
      deps.logger.warn(
        { err: error, tenant_id: record.tenantId },
        "completer: will try again later",
      );
    } finally {
      if (!execution.finalResponse) await execution.release();
    }
  }
  return run;
}

/**
 * Runs the completer every `intervalMs` (never two runs of this process at once) until the
 * returned function is called; that function resolves once a run in progress has ended. Each
 * run is counted by `metrics`; a run that is still going when the next one is due delays it,
 * which `completer_last_success_timestamp_seconds` shows.
 */
export function startCompleter(
  deps: CompleterDeps,
  intervalMs: number,
  metrics?: Metrics,
): () => Promise<void> {
  let current: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (current) return;
    current = completeAbandoned(deps)
      .then(
        (run) => metrics?.observeCompleterRun(run),
        (error: unknown) => {
          metrics?.observeCompleterFailure();
          deps.logger.error({ err: error }, "completer run failed");
        },
      )
      .finally(() => {
        current = undefined;
      });
  }, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await current;
  };
}
