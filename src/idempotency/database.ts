import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import type postgres from "postgres";

/** The drizzle database (postgres.js) the layer runs on, whatever the host's schema. */
// biome-ignore lint/suspicious/noExplicitAny: the host's schema is its own business.
export type IdempotencyDatabase = PostgresJsDatabase<any>;

/** The transaction handle `db.transaction(fn)` passes to `fn`. */
export type TransactionOf<DB extends IdempotencyDatabase> = Parameters<
  Parameters<DB["transaction"]>[0]
>[0];

/** A transaction of an idempotency database. */
export type IdempotencyTransaction = TransactionOf<IdempotencyDatabase>;

/** What the layer's query functions take: the pool, or a transaction. */
export type IdempotencyExecutor = IdempotencyDatabase | IdempotencyTransaction;

/**
 * The postgres.js client under a drizzle database or transaction: the pool, or the connection
 * a transaction holds. The layer sends its own statements through it as fixed SQL text with
 * parameters (prepared once per connection, no query building, rows as PostgreSQL returns
 * them), several at a time when they belong together: statements sent on one connection
 * without waiting for each answer are pipelined, one write and one round trip for all of them,
 * and PostgreSQL still runs them in order. drizzle awaits every statement before the next.
 */
export function sqlOf(executor: IdempotencyExecutor): postgres.Sql {
  // drizzle keeps the client on `session` (internal in its types, stable across 0.3x–0.45).
  const client = (executor as unknown as { session?: { client?: postgres.Sql } }).session?.client;
  if (typeof client?.unsafe !== "function") {
    throw new Error(
      "the idempotency layer needs a drizzle database on postgres.js (drizzle-orm/postgres-js)",
    );
  }
  return client;
}

/**
 * Sends statements together on one connection and waits for all of them. A statement that
 * fails aborts the transaction, so those after it fail too; the first failure (in order) is
 * the one thrown.
 */
export async function pipeline<T extends readonly unknown[]>(
  statements: { [K in keyof T]: PromiseLike<T[K]> },
): Promise<T> {
  const settled = await Promise.allSettled(statements as readonly PromiseLike<unknown>[]);
  const failed = settled.find((s) => s.status === "rejected");
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/**
 * Runs `work` in a transaction whose last statement goes out with COMMIT right behind it, one
 * round trip for both: `work` passes that statement, sent and not awaited, to `endWith` and
 * returns. Its answer is read after COMMIT, and a failure is thrown from here: PostgreSQL
 * answers the COMMIT of a transaction that a failed statement aborted with ROLLBACK, not an
 * error, so nothing was committed. The statement must be one that fails when it does not do
 * its job (an UPDATE that writes no row succeeds; see `store.ts` for the form that fails).
 * `endWith` returns the statement's promise, already guarded against an unhandled rejection.
 */
export async function transactionEndingWith<T>(
  db: IdempotencyDatabase,
  work: (tx: IdempotencyTransaction, endWith: <R>(last: Promise<R>) => Promise<R>) => Promise<T>,
): Promise<T> {
  let last: Promise<unknown> | undefined;
  let result: T;
  try {
    result = await db.transaction((tx) =>
      work(tx, (statement) => {
        last = statement;
        statement.catch(() => {});
        return statement;
      }),
    );
  } catch (error) {
    // A driver that reports the aborted COMMIT reports the first failed statement as it came
    // from PostgreSQL; when that is the last one, its own error says more (what the statement
    // was for). One that failed only because an earlier one had aborted the transaction
    // (25P02) does not.
    const lastError = await last?.then(
      () => undefined,
      (e: unknown) => e,
    );
    if (lastError !== undefined && (lastError as { code?: unknown }).code !== "25P02") {
      throw lastError;
    }
    throw error;
  }
  await last;
  return result;
}
