import { setTimeout as sleep } from "node:timers/promises";
import type { Env, MiddlewareHandler } from "hono";
import type { Database, Transaction } from "../db/client.js";
import { ApiError, problemBody } from "../http/errors.js";
import { PROBLEM_CONTENT_TYPE } from "../http/problem.js";
import {
  admit,
  type IdempotencyOptions,
  type IdempotencyOutcome,
  type IdempotencyVariables,
  remember,
} from "./middleware.js";
import { sendStored } from "./request.js";
import {
  advanceRecord,
  type ClaimedRecord,
  claimKey,
  claimRecord,
  FINISHED,
  fenceRecord,
  finishRecord,
  KeyLockTimeout,
  type KeyRef,
  releaseRecord,
  STARTED,
  type StoredResponse,
  storedResponseOf,
  takeOverAbandonedRecord,
  takeOverRecord,
} from "./store.js";

/** The final answer of a multi-phase request, as its last phase returns it. */
export interface PhaseResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** What a phase decides: move to the next recovery point, or finish with a response. */
export type PhaseStep = { next: string } | { response: PhaseResponse };

/** Another attempt took the record over: this execution must not write anything more. */
export class LeaseLost extends Error {
  override name = "LeaseLost";
}

export interface ExecutionOptions {
  leaseMs: number;
  ttlMs: number;
  /** Goes into the problem bodies that phases store. */
  requestId: string;
}

/**
 * One execution of a request that spans several transactions (brandur's atomic phases): the
 * record it claimed, where it got to, and the means to run its next phase.
 *
 * Each phase is one transaction that locks the record, checks that this attempt still owns it
 * (a newer attempt after a lease ran out fences the old one off), runs the phase's business
 * writes, and moves the record to the phase's recovery point or stores the final response.
 * Work between phases (calling the payment provider) happens outside any transaction.
 */
export class Execution {
  readonly key: KeyRef;
  readonly recordId: string;
  readonly attempt: number;
  recoveryPoint: string;
  finalResponse: StoredResponse | undefined;

  constructor(
    private readonly db: Database,
    key: KeyRef,
    claimed: ClaimedRecord,
    readonly options: ExecutionOptions,
  ) {
    this.key = key;
    this.recordId = claimed.recordId;
    this.attempt = claimed.attempt;
    this.recoveryPoint = claimed.recoveryPoint;
  }

  get tenantId(): string {
    return this.key.tenantId;
  }

  /**
   * Runs one atomic phase.
   * @throws LeaseLost when another attempt owns the record now; nothing of the phase is kept
   */
  async phase(work: (tx: Transaction) => Promise<PhaseStep>): Promise<PhaseStep> {
    let stored: StoredResponse | undefined;
    const step = await this.db.transaction(async (tx) => {
      if (!(await fenceRecord(tx, this.key, this.attempt))) throw new LeaseLost();
      const step = await work(tx);
      if ("next" in step) {
        await advanceRecord(tx, this.key, this.attempt, step.next, this.options.leaseMs);
      } else {
        stored = serialise(step.response);
        await finishRecord(tx, this.key, this.attempt, stored, this.options.ttlMs);
      }
      return step;
    });
    if ("next" in step) {
      this.recoveryPoint = step.next;
    } else {
      this.recoveryPoint = FINISHED;
      this.finalResponse = stored;
    }
    return step;
  }

  /** A final step answering with a problem, stored like any other business outcome. */
  problem(error: ApiError): PhaseStep {
    return {
      response: {
        status: error.status,
        body: problemBody(error, this.options.requestId),
        headers: { "content-type": PROBLEM_CONTENT_TYPE, ...lowerCase(error.headers) },
      },
    };
  }

  /** Gives the record up without a final response (see `releaseRecord`). */
  async release(): Promise<void> {
    await releaseRecord(this.db, this.key, this.attempt);
  }

  /**
   * Takes over an abandoned record for the completer (see `takeOverAbandonedRecord`), under the
   * key's lock without waiting: a key someone holds right now is not abandoned.
   * @throws KeyLockTimeout when another transaction holds the key
   */
  static async takeOverAbandoned(
    db: Database,
    key: KeyRef,
    graceMs: number,
    options: ExecutionOptions,
  ): Promise<Execution | undefined> {
    const claimed = await db.transaction(async (tx) => {
      await claimKey(tx, key, 0);
      return takeOverAbandonedRecord(tx, key, options.leaseMs, graceMs);
    });
    return claimed && new Execution(db, key, claimed, options);
  }
}

/**
 * Drives an execution from wherever its record stopped to its final response: the step for its
 * recovery point, then the next, until a phase stores the response. `steps` has one entry per
 * recovery point before `finished`, so a missing step is a type error.
 */
export async function drive<Point extends string>(
  execution: Execution,
  steps: Record<Point, () => Promise<unknown>>,
): Promise<StoredResponse> {
  while (!execution.finalResponse) {
    const step = (steps as Record<string, (() => Promise<unknown>) | undefined>)[
      execution.recoveryPoint
    ];
    if (!step) throw new Error(`no step from recovery point ${execution.recoveryPoint}`);
    await step();
  }
  return execution.finalResponse;
}

function serialise(response: PhaseResponse): StoredResponse {
  return {
    status: response.status,
    headers: { "content-type": "application/json", ...lowerCase(response.headers) },
    body: JSON.stringify(response.body),
  };
}

function lowerCase(headers: Record<string, string> = {}): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}

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
  | { kind: "claimed"; claimed: ClaimedRecord }
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
  options: PhasedIdempotencyOptions<E>,
): MiddlewareHandler<E> {
  const ttlMs = options.ttlMs ?? 24 * 60 * 60 * 1000;
  const waitMs = options.waitMs ?? 5000;
  const leaseMs = options.leaseMs ?? 30_000;
  const pollMs = options.pollMs ?? 50;
  const retryAfter = String(options.retryAfterSeconds ?? 1);
  const { db } = options;

  return async function phasedIdempotency(c, next) {
    const started = performance.now();
    let polls = 0;
    const report = (outcome: IdempotencyOutcome) => {
      c.set("idempotencyOutcome", outcome);
      options.onOutcome?.(c, { outcome, waitedMs: polls > 0 ? performance.now() - started : 0 });
    };
    const admitted = await admit(c, options, (outcome) => report(outcome));
    if (admitted instanceof Response) return admitted;
    const { request, text } = admitted;
    const inProgress = () => {
      report("in_progress");
      return new ApiError("idempotency_key_in_progress", {
        headers: { "Retry-After": retryAfter },
      });
    };

    let lookup: Lookup;
    for (;;) {
      try {
        lookup = await db.transaction(async (tx): Promise<Lookup> => {
          const { record } = await claimKey(tx, request, waitMs);
          const restartable =
            record?.expired &&
            !record.leaseActive &&
            (record.recoveryPoint === STARTED || record.recoveryPoint === FINISHED);
          if (!record || restartable) {
            return { kind: "claimed", claimed: await claimRecord(tx, request, leaseMs, ttlMs) };
          }
          if (record.fingerprint !== request.fingerprint) return { kind: "mismatched" };
          const stored = storedResponseOf(record);
          if (stored && record.recoveryPoint === FINISHED) {
            return { kind: "replay", stored, expiresInMs: record.expiresInMs };
          }
          if (record.leaseActive) return { kind: "busy" };
          return { kind: "claimed", claimed: await takeOverRecord(tx, request, leaseMs) };
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
      throw new ApiError("idempotency_key_reused");
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

    const execution = new Execution(db, request, lookup.claimed, {
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
}
