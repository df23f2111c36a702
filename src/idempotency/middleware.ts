import type { Context, Env, MiddlewareHandler } from "hono";
import type { Database, Transaction } from "../db/client.js";
import { ApiError } from "../http/errors.js";
import type { Execution } from "./phased.js";
import type { ReplayCache } from "./replay-cache.js";
import { fingerprinted, readKeyedRequest, requestText, sendStored } from "./request.js";
import {
  claimKey,
  type FoundRecord,
  type KeyedRequest,
  KeyLockTimeout,
  type StoredResponse,
  saveFinishedRecord,
  storedResponseOf,
} from "./store.js";

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
export interface IdempotencyVariables<Tx = Transaction> {
  /** The request's transaction: every write of an idempotent handler goes through it. */
  tx: Tx;
  /** The execution of a multi-phase request (see `phasedIdempotency`). */
  execution: Execution;
  idempotencyOutcome: IdempotencyOutcome;
}

export interface IdempotencyOptions<E extends Env> {
  /** The drizzle database (postgres.js) holding `idempotency_keys` and the business tables. */
  db: Database;
  /** The tenant a request acts for; keys of different tenants never meet. */
  tenantId: (c: Context<E>) => string;
  /** How long a record answers replays, in milliseconds. Default 86 400 000 (24 h). */
  ttlMs?: number;
  /**
   * How long a request waits for a concurrent execution of the same key to finish before it
   * answers 409 `idempotency_key_in_progress`. Default 5 000: long enough for any single
   * transaction of this API, short enough that a client's HTTP timeout has not fired yet.
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
  /** Called once per request with a valid key, for metrics and logs. */
  onOutcome?: (c: Context<E>, event: IdempotencyEvent) => void;
  /** Finished records kept in memory, so replays skip the database. Default: none. */
  cache?: ReplayCache;
}

const STORED_HEADERS = ["content-type", "location"] as const;
const BUSINESS_ERROR_STATUSES = new Set([402, 404, 409, 410]);

export function defaultStoreStatus(status: number): boolean {
  return status < 400 || BUSINESS_ERROR_STATUSES.has(status);
}

/** Marks the end of a transaction whose work must not be committed. */
class Discard extends Error {
  constructor(readonly response?: StoredResponse) {
    super("discarded");
  }
}

type Claim =
  | { kind: "existing"; record: FoundRecord; waitedMs: number }
  | { kind: "executed"; response: StoredResponse; waitedMs: number };

/**
 * Makes a POST handler idempotent under the `Idempotency-Key` header (docs/idempotency.md),
 * for handlers whose writes fit in one database transaction.
 *
 * The key is claimed by the first statement of the request's transaction (an advisory lock on
 * tenant + key), the handler writes through `c.var.tx`, and the response is stored in the same
 * transaction before COMMIT; so either the writes and the record both exist or neither does.
 * A concurrent duplicate blocks on the lock until the first commits (it then replays) or rolls
 * back (it then executes).
 *
 * @example
 * ```ts
 * app.post(
 *   "/v1/orders",
 *   idempotency({ db, tenantId: (c) => c.var.tenant.id }),
 *   async (c) => c.json(await createOrder(c.var.tx, await c.req.json()), 201),
 * );
 * ```
 */
export function idempotency<E extends Env & { Variables: IdempotencyVariables }>(
  options: IdempotencyOptions<E>,
): MiddlewareHandler<E> {
  const ttlMs = options.ttlMs ?? 24 * 60 * 60 * 1000;
  const waitMs = options.waitMs ?? 5000;
  const retryAfter = String(options.retryAfterSeconds ?? 1);
  const storeStatus = options.storeStatus ?? defaultStoreStatus;

  return async function idempotency(c, next) {
    const report = (outcome: IdempotencyOutcome, waitedMs: number) => {
      c.set("idempotencyOutcome", outcome);
      options.onOutcome?.(c, { outcome, waitedMs });
    };
    const admitted = await admit(c, options, report);
    if (admitted instanceof Response) return admitted;
    const { request, text } = admitted;

    /** Locks the key, looks it up, and runs `work` only when no live record answers for it. */
    const claim = (work: (tx: Transaction) => Promise<StoredResponse>) =>
      options.db.transaction(async (tx): Promise<Claim> => {
        const { record, waitedMs } = await claimKey(tx, request, waitMs);
        if (record && !record.expired) return { kind: "existing", record, waitedMs };
        const response = await work(tx);
        await saveFinishedRecord(tx, request, response, ttlMs);
        return { kind: "executed", response, waitedMs };
      });

    let result: Claim;
    try {
      try {
        result = await claim(async (tx) => {
          c.set("tx", tx);
          await next();
          const response = await snapshot(c);
          if (!storeStatus(response.status)) throw new Discard();
          // A handler that threw may have written before it did: its outcome is kept, not its writes.
          if (c.error) throw new Discard(response);
          return response;
        });
      } catch (error) {
        if (!(error instanceof Discard)) throw error;
        const { response } = error;
        if (!response) {
          report("not_stored", 0);
          return;
        }
        result = await claim(async () => response);
      }
    } catch (error) {
      if (error instanceof KeyLockTimeout) {
        report("in_progress", waitMs);
        throw new ApiError("idempotency_key_in_progress", {
          headers: { "Retry-After": retryAfter },
        });
      }
      throw error;
    }

    if (result.kind === "executed") {
      report("executed", result.waitedMs);
      c.header("Idempotent-Replayed", "false");
      return;
    }
    const { record, waitedMs } = result;
    const stored = storedResponseOf(record);
    if (!stored) {
      report("in_progress", waitedMs);
      throw new ApiError("idempotency_key_in_progress", { headers: { "Retry-After": retryAfter } });
    }
    remember(options.cache, request, text, record.fingerprint, stored, record.expiresInMs);
    return answerFromRecord(
      c,
      request,
      { fingerprint: record.fingerprint, response: stored },
      report,
      waitedMs,
    );
  };
}

/**
 * Reads a keyed request and answers it from the replay cache when it can: at once when its
 * text is byte for byte that of a request with the cached fingerprint (most retries), after
 * fingerprinting it otherwise. Returns the answer, or the request to go on with.
 */
export async function admit<E extends Env>(
  c: Context<E>,
  options: Pick<IdempotencyOptions<E>, "tenantId" | "cache">,
  report: (outcome: IdempotencyOutcome, waitedMs: number) => void,
): Promise<Response | { request: KeyedRequest; text: string }> {
  const incoming = await readKeyedRequest(c, options.tenantId(c));
  const text = requestText(incoming);
  const cached = options.cache?.get(incoming);
  if (cached && cached.requestText === text) {
    report("replayed", 0);
    return sendStored(c, cached.response, true);
  }
  const request = fingerprinted(incoming);
  if (cached) return answerFromRecord(c, request, cached, report, 0);
  return { request, text };
}

/** Puts a finished record in the replay cache; `text` only vouches for a matching fingerprint. */
export function remember(
  cache: ReplayCache | undefined,
  request: KeyedRequest,
  text: string,
  fingerprint: string,
  response: StoredResponse,
  expiresInMs: number,
): void {
  const requestText = fingerprint === request.fingerprint ? text : "";
  cache?.set(request, { fingerprint, requestText, response }, expiresInMs);
}

/** The answer to a request whose key has a finished record: its replay, or 422 if it differs. */
export function answerFromRecord(
  c: Context,
  request: KeyedRequest,
  record: { fingerprint: string; response: StoredResponse },
  report: (outcome: IdempotencyOutcome, waitedMs: number) => void,
  waitedMs: number,
): Response {
  if (record.fingerprint !== request.fingerprint) {
    report("mismatched", waitedMs);
    throw new ApiError("idempotency_key_reused");
  }
  report("replayed", waitedMs);
  return sendStored(c, record.response, true);
}

/** Reads the handler's response for storing, leaving an identical one in its place. */
async function snapshot(c: Context): Promise<StoredResponse> {
  const { status } = c.res;
  const body = await c.res.text();
  c.res = new Response(body, { status, headers: c.res.headers });
  const headers: Record<string, string> = {};
  for (const name of STORED_HEADERS) {
    const value = c.res.headers.get(name);
    if (value !== null) headers[name] = value;
  }
  return { status, headers, body };
}
