import type { Context, Env, MiddlewareHandler } from "hono";
import { admit, answerFromRecord, remember } from "./admission.js";
import { type IdempotencyTransaction as Transaction, transactionEndingWith } from "./database.js";
import {
  type IdempotencyOptions,
  type IdempotencyOutcome,
  type IdempotencyVariables,
  resolveOptions,
} from "./options.js";
import { IdempotencyRejection } from "./rejection.js";
import {
  claimKey,
  type FoundRecord,
  KeyLockTimeout,
  type StoredResponse,
  saveFinishedRecord,
  storedResponseOf,
  transactionTimeOf,
} from "./store.js";

/** The headers a replay repeats; the rest describe one response, not the outcome. */
const STORED_HEADERS = ["content-type", "location"] as const;

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
 * Makes a POST handler idempotent under the `Idempotency-Key` header (see README.md beside
 * this file), for handlers whose writes fit in one database transaction.
 *
 * The key is claimed by the first statements of the request's transaction (its record row,
 * inserted as a placeholder or locked, see `claimKey`), the handler writes through `c.var.tx`,
 * and the response is stored over that row in the same transaction before COMMIT; so either
 * the writes and the record both exist or neither does. A concurrent duplicate blocks on the
 * row until the first commits (it then replays) or rolls back (it then executes).
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
  idempotencyOptions: IdempotencyOptions<E>,
): MiddlewareHandler<E> {
  const options = resolveOptions(idempotencyOptions);
  const { ttlMs, waitMs, storeStatus } = options;
  const retryAfter = String(options.retryAfterSeconds);

  const run: MiddlewareHandler<E> = async (c, next) => {
    const report = (outcome: IdempotencyOutcome, waitedMs: number) => {
      c.set("idempotencyOutcome", outcome);
      options.onOutcome(c, { outcome, waitedMs });
    };
    const admitted = await admit(c, options, report);
    if (admitted instanceof Response) return admitted;
    const { request, text } = admitted;

    /** Claims the key, looks it up, and runs `work` only when no live record answers for it. */
    const claim = (work: (tx: Transaction, transactionTime: Date) => Promise<StoredResponse>) =>
      transactionEndingWith(options.db, async (tx, endWith): Promise<Claim> => {
        const { record, waitedMs, transactionTime } = await claimKey(tx, request, waitMs);
        if (record && !record.expired) return { kind: "existing", record, waitedMs };
        const response = await work(tx, transactionTime ?? (await transactionTimeOf(tx)));
        endWith(saveFinishedRecord(tx, request, response, ttlMs, options.newRecordId()));
        return { kind: "executed", response, waitedMs };
      });

    let result: Claim;
    try {
      try {
        result = await claim(async (tx, transactionTime) => {
          c.set("tx", tx);
          c.set("transactionTime", transactionTime);
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
        throw new IdempotencyRejection("idempotency_key_in_progress", {
          headers: { "Retry-After": retryAfter },
        });
      }
      throw error;
    }

    if (result.kind === "executed") {
      report("executed", result.waitedMs);
      // On the response itself: `c.header` on a finished response rebuilds it around its body
      // as a stream (on @hono/node-server, a full Fetch Response streamed to the socket).
      c.res.headers.set("Idempotent-Replayed", "false");
      return;
    }
    const { record, waitedMs } = result;
    const stored = storedResponseOf(record);
    if (!stored) {
      report("in_progress", waitedMs);
      throw new IdempotencyRejection("idempotency_key_in_progress", {
        headers: { "Retry-After": retryAfter },
      });
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

  return async function idempotency(c, next) {
    try {
      return await run(c, next);
    } catch (error) {
      if (error instanceof IdempotencyRejection) return options.onRejection(c, error);
      throw error;
    }
  };
}

/** Reads the handler's response for storing, leaving an identical one in its place. */
async function snapshot(c: Context): Promise<StoredResponse> {
  const { status } = c.res;
  let body = stringBodyOf(c.res);
  if (body === undefined) {
    body = await c.res.text();
    c.res = new Response(body, { status, headers: c.res.headers });
  }
  const headers: Record<string, string> = {};
  for (const name of STORED_HEADERS) {
    const value = c.res.headers.get(name);
    if (value !== null) headers[name] = value;
  }
  return { status, headers, body };
}

/**
 * The body of a response built from a string, without reading it, where the runtime keeps it:
 * @hono/node-server's lightweight `Response` holds `[status, body, headers]` under a symbol
 * described `cache` until something needs a real Fetch `Response`. Reading the body with
 * `text()` builds that Response and its stream, about 20 µs per request measured alone.
 * Anything else, or another shape of that cache, is read with `text()`.
 */
export function stringBodyOf(res: Response): string | undefined {
  for (const symbol of Object.getOwnPropertySymbols(res)) {
    if (symbol.description !== "cache") continue;
    const cached: unknown = (res as unknown as Record<symbol, unknown>)[symbol];
    if (
      Array.isArray(cached) &&
      cached.length === 3 &&
      cached[0] === res.status &&
      typeof cached[1] === "string"
    ) {
      return cached[1];
    }
  }
  return undefined;
}
