import { setTimeout as sleep } from "node:timers/promises";
import type { Env, MiddlewareHandler } from "hono";
import { admit, remember } from "./admission.js";
import { transactionEndingWith } from "./database.js";
import { Execution, LeaseLost } from "./execution.js";
import {
  type IdempotencyOptions,
  type IdempotencyOutcome,
  type IdempotencyVariables,
  resolveOptions,
} from "./options.js";
import { IdempotencyRejection } from "./rejection.js";
import { sendStored } from "./request.js";
import {
  type ClaimedRecord,
  claimKey,
  claimRecord,
  FINISHED,
  KeyLockTimeout,
  STARTED,
  type StoredResponse,
  storedResponseOf,
  takeOverRecord,
} from "./store.js";

export interface PhasedIdempotencyOptions<E extends Env> extends IdempotencyOptions<E> {
  /**
   * How long an execution owns its key before another request may take it over, in
   * milliseconds. It must outlast the slowest phase including the provider call with all its
   * retries, or two executions would overlap (harmless thanks to fencing and the provider's own
   * idempotency, but wasteful). Default 30 000.
   */
  leaseMs?: number;
  /** How often a duplicate checks whether the execution it waits for finished. Default 50. */
  pollMs?: number;
}

type Lookup =
  | { kind: "claimed"; claimed: Promise<ClaimedRecord> }
  | { kind: "replay"; stored: StoredResponse; expiresInMs: number }
  | { kind: "mismatched" }
  | { kind: "busy" };

/**
 * The idempotency middleware for requests that span several transactions, such as payments,
 * whose middle step calls an external provider and so cannot sit inside a database transaction.
 *
 * It claims the key by writing its record at `started` with a lease, hands the handler an
 * `Execution` (`c.var.execution`) to run its phases, and answers duplicates: a finished record
 * is replayed, a live lease is waited on (polling up to `waitMs`, then 409 with `Retry-After`),
 * and a lease that ran out is taken over, resuming from the record's recovery point.
 *
 * If the handler ends without a final response (validation failed, provider outcome unknown,
 * a crash in this process), the record is released: deleted while still at `started`, kept
 * with its recovery point otherwise, so a retry or the completer resumes it.
 */
export function phasedIdempotency<E extends Env & { Variables: IdempotencyVariables }>(
  phasedOptions: PhasedIdempotencyOptions<E>,
): MiddlewareHandler<E> {
  const options = resolveOptions(phasedOptions);
  const { db, ttlMs, waitMs } = options;
  const leaseMs = phasedOptions.leaseMs ?? 30_000;
  const pollMs = phasedOptions.pollMs ?? 50;
  const retryAfter = String(options.retryAfterSeconds);

  const run: MiddlewareHandler<E> = async (c, next) => {
    const started = performance.now();
    let polls = 0;
    const report = (outcome: IdempotencyOutcome) => {
      c.set("idempotencyOutcome", outcome);
      options.onOutcome(c, { outcome, waitedMs: polls > 0 ? performance.now() - started : 0 });
    };
    const admitted = await admit(c, options, (outcome) => report(outcome));
    if (admitted instanceof Response) return admitted;
    const { request, text } = admitted;
    const inProgress = () => {
      report("in_progress");
      return new IdempotencyRejection("idempotency_key_in_progress", {
        headers: { "Retry-After": retryAfter },
      });
    };

    let lookup: Lookup;
    for (;;) {
      try {
        lookup = await transactionEndingWith(db, async (tx, endWith): Promise<Lookup> => {
          const { record } = await claimKey(tx, request, waitMs);
          const restartable =
            record?.expired &&
            !record.leaseActive &&
            (record.recoveryPoint === STARTED || record.recoveryPoint === FINISHED);
          if (!record || restartable) {
            return {
              kind: "claimed",
              claimed: endWith(claimRecord(tx, request, leaseMs, ttlMs, options.newRecordId())),
            };
          }
          if (record.fingerprint !== request.fingerprint) return { kind: "mismatched" };
          const stored = storedResponseOf(record);
          if (stored && record.recoveryPoint === FINISHED) {
            return { kind: "replay", stored, expiresInMs: record.expiresInMs };
          }
          if (record.leaseActive) return { kind: "busy" };
          // Awaited, not sent with COMMIT: a drizzle statement (this cold path is not fixed
          // SQL), and drizzle's asynchronous path could put it on the wire after COMMIT.
          return {
            kind: "claimed",
            claimed: Promise.resolve(await takeOverRecord(tx, request, leaseMs)),
          };
        });
      } catch (error) {
        if (error instanceof KeyLockTimeout) throw inProgress();
        throw error;
      }
      if (lookup.kind !== "busy") break;
      if (performance.now() - started + pollMs > waitMs) throw inProgress();
      polls++;
      await sleep(pollMs);
    }

    if (lookup.kind === "mismatched") {
      report("mismatched");
      throw new IdempotencyRejection("idempotency_key_reused");
    }
    if (lookup.kind === "replay") {
      remember(
        options.cache,
        request,
        text,
        request.fingerprint,
        lookup.stored,
        lookup.expiresInMs,
      );
      report("replayed");
      return sendStored(c, lookup.stored, true);
    }

    // Settled: transactionEndingWith read its answer after COMMIT.
    const execution = new Execution(db, request, await lookup.claimed, {
      leaseMs,
      ttlMs,
      requestId: c.get("requestId") ?? "unknown",
    });
    c.set("execution", execution);
    try {
      await next();
    } finally {
      if (!execution.finalResponse) await execution.release();
    }
    if (c.error instanceof LeaseLost) {
      // A newer attempt owns the key and will store the outcome; the client gets it by retrying.
      throw inProgress();
    }
    report(execution.finalResponse ? "executed" : "not_stored");
  };

  return async function phasedIdempotency(c, next) {
    try {
      return await run(c, next);
    } catch (error) {
      if (error instanceof IdempotencyRejection) return options.onRejection(c, error);
      throw error;
    }
  };
}
