import {
  type IdempotencyDatabase,
  type IdempotencyTransaction,
  transactionEndingWith,
} from "./database.js";
import {
  advanceRecord,
  type ClaimedRecord,
  FINISHED,
  fenceRecord,
  finishRecord,
  type KeyRef,
  lockRecordNoWait,
  releaseRecord,
  type StoredResponse,
  takeOverAbandonedRecord,
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
  /** The id of the HTTP request this execution serves, for the bodies its phases store. */
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
    private readonly db: IdempotencyDatabase,
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
  async phase(work: (tx: IdempotencyTransaction) => Promise<PhaseStep>): Promise<PhaseStep> {
    let stored: StoredResponse | undefined;
    // The fence goes out with the phase's first statements, and the record's write with
    // COMMIT: one round trip less at each end. The phase's statements queue behind the fence
    // on the connection, so they run once it holds the record's row lock; if it then finds
    // the record no longer this attempt's, whatever the phase did or decided is rolled back.
    const step = await transactionEndingWith(this.db, async (tx, endWith) => {
      const fenced = fenceRecord(tx, this.key, this.attempt);
      fenced.catch(() => {});
      let step: PhaseStep;
      try {
        step = await work(tx);
      } catch (error) {
        if (!(await fenced)) throw new LeaseLost();
        throw error;
      }
      if (!(await fenced)) throw new LeaseLost();
      if ("next" in step) {
        endWith(advanceRecord(tx, this.key, this.attempt, step.next, this.options.leaseMs));
      } else {
        stored = serialise(step.response);
        endWith(finishRecord(tx, this.key, this.attempt, stored, this.options.ttlMs));
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

  /** Gives the record up without a final response (see `releaseRecord`). */
  async release(): Promise<void> {
    await releaseRecord(this.db, this.key, this.attempt);
  }

  /**
   * Takes over an abandoned record for the completer (see `takeOverAbandonedRecord`), locking
   * its row without waiting: a key someone holds right now is not abandoned.
   * @throws KeyLockTimeout when another transaction holds the key
   */
  static async takeOverAbandoned(
    db: IdempotencyDatabase,
    key: KeyRef,
    graceMs: number,
    options: ExecutionOptions,
  ): Promise<Execution | undefined> {
    const claimed = await db.transaction(async (tx) => {
      if (!(await lockRecordNoWait(tx, key))) return undefined;
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
