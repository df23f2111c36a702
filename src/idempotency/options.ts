import { randomUUID } from "node:crypto";
import type { Context, Env } from "hono";
import type { IdempotencyDatabase, IdempotencyTransaction } from "./database.js";
import type { Execution } from "./execution.js";
import { type IdempotencyRejection, problemJson } from "./rejection.js";
import type { ReplayCache } from "./replay-cache.js";

/** What happened to a request that carried a valid key. */
export type IdempotencyOutcome =
  /** Executed for the first time; its response is stored. */
  | "executed"
  /** Answered with the stored response of an earlier execution. */
  | "replayed"
  /** The key was used before for a different request: 422. */
  | "mismatched"
  /** Another execution still held the key after the wait: 409. */
  | "in_progress"
  /** Executed, but the answer is not an outcome to keep (5xx, validation): rolled back. */
  | "not_stored";

export interface IdempotencyEvent {
  outcome: IdempotencyOutcome;
  /** Time spent waiting for a concurrent execution of the same key, in milliseconds. */
  waitedMs: number;
}

/** What the middleware puts on the context. */
export interface IdempotencyVariables<Tx = IdempotencyTransaction> {
  /** The request's transaction: every write of an idempotent handler goes through it. */
  tx: Tx;
  /**
   * When the request's transaction began by the database's clock (PostgreSQL's `now()`, what a
   * column defaulting to `now()` gets in it), to the millisecond, read by the claim at no cost.
   * A handler that stamps its rows with it knows their timestamps without reading them back,
   * so its writes need not be waited for (see `insertOrder` in the app for an example).
   */
  transactionTime: Date;
  /** The execution of a multi-phase request (see `phasedIdempotency`). */
  execution: Execution;
  idempotencyOutcome: IdempotencyOutcome;
}

/** The tenant of every key when the host names none: a single-tenant app. */
export const DEFAULT_TENANT_ID = "default";

export interface IdempotencyOptions<E extends Env> {
  /** The drizzle database (postgres.js) holding `idempotency_keys` and the business tables. */
  db: IdempotencyDatabase;
  /**
   * The tenant a request acts for; keys of different tenants never meet. Default: every
   * request acts for `DEFAULT_TENANT_ID`.
   */
  tenantId?: (c: Context<E>) => string;
  /** How long a record answers replays, in milliseconds. Default 86 400 000 (24 h). */
  ttlMs?: number;
  /**
   * How long a request waits for a concurrent execution of the same key to finish before it
   * answers 409 `idempotency_key_in_progress`. Default 5 000: long enough for any single
   * transaction of a typical API, short enough that a client's HTTP timeout has not fired yet.
   */
  waitMs?: number;
  /** `Retry-After` seconds on that 409. Default 1. */
  retryAfterSeconds?: number;
  /**
   * Which statuses are outcomes to store. Default: below 400, and 402, 404, 409, 410 (the
   * business answers). Everything else (400, 401, 413, 415, 422, 429, 5xx) rolls back and
   * stores nothing, so the client can fix the request and retry with the same key.
   */
  storeStatus?: (status: number) => boolean;
  /** Called once per request with a valid key: the hook for metrics and logs. Default: none. */
  onOutcome?: (c: Context<E>, event: IdempotencyEvent) => void;
  /**
   * Answers a request the layer rejects itself (key missing or invalid, reused, in progress;
   * body not JSON). It may return a response or throw the host's own error for its `onError`.
   * Default `problemJson`: throws an HTTPException carrying an RFC 9457 problem+json response.
   */
  onRejection?: (c: Context<E>, rejection: IdempotencyRejection) => Response | Promise<Response>;
  /**
   * A new id for each incarnation of a key (`record_id`, which the handler can use to derive
   * idempotency keys for the calls it makes). Default `idk_` and a random UUID.
   */
  newRecordId?: () => string;
  /** Finished records kept in memory, so replays skip the database. Default: none. */
  cache?: ReplayCache;
}

const BUSINESS_ERROR_STATUSES = new Set([402, 404, 409, 410]);

export function defaultStoreStatus(status: number): boolean {
  return status < 400 || BUSINESS_ERROR_STATUSES.has(status);
}

/** The options with every default applied: the one place the defaults live. */
export type ResolvedOptions<E extends Env> = Required<Omit<IdempotencyOptions<E>, "cache">> &
  Pick<IdempotencyOptions<E>, "cache">;

export function resolveOptions<E extends Env>(options: IdempotencyOptions<E>): ResolvedOptions<E> {
  return {
    db: options.db,
    tenantId: options.tenantId ?? (() => DEFAULT_TENANT_ID),
    ttlMs: options.ttlMs ?? 24 * 60 * 60 * 1000,
    waitMs: options.waitMs ?? 5000,
    retryAfterSeconds: options.retryAfterSeconds ?? 1,
    storeStatus: options.storeStatus ?? defaultStoreStatus,
    onOutcome: options.onOutcome ?? (() => {}),
    onRejection: options.onRejection ?? problemJson,
    newRecordId: options.newRecordId ?? (() => `idk_${randomUUID()}`),
    cache: options.cache,
  };
}
