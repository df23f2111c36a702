import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";

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
