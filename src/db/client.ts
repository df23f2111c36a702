import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import * as schema from "./schema.js";

export type Database = PostgresJsDatabase<typeof schema>;
/** The transaction handle drizzle passes to `db.transaction(fn)`. */
export type Transaction = Parameters<Parameters<Database["transaction"]>[0]>[0];
/** What query functions take: the pool, or the transaction of the request they serve. */
export type Executor = Database | Transaction;

export interface DatabaseHandle {
  db: Database;
  /** The underlying postgres.js pool, for pool statistics and shutdown. */
  client: postgres.Sql;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** Pool size. Default 10. */
  max?: number;
  /** Name reported in `pg_stat_activity`. Default `idempotent-payments`. */
  applicationName?: string;
}

/** Opens a postgres.js pool wrapped in drizzle. Nothing connects until the first query. */
export function openDatabase(url: string, options: DatabaseOptions = {}): DatabaseHandle {
  const client = postgres(url, {
    max: options.max ?? 10,
    connect_timeout: 10,
    idle_timeout: 60,
    onnotice: () => {},
    connection: { application_name: options.applicationName ?? "idempotent-payments" },
  });
  const db = drizzle(preparedStatements(client), { schema });
  return {
    db,
    client,
    close: () => client.end({ timeout: 5 }),
  };
}

/**
 * drizzle's postgres.js driver sends every query it did not name with `prepare: false`, and
 * postgres.js then needs two round trips per statement (parse and describe, then bind and
 * execute) and PostgreSQL plans it anew each time. Re-enabling postgres.js's own prepared
 * statements (cached per connection by query text, its default) makes every repeated statement
 * one round trip; the write path runs the same handful of statements all day. Not for a
 * transaction-mode pooler such as PgBouncer before 1.21, which cannot keep prepared statements.
 */
function preparedStatements<T extends postgres.Sql | postgres.TransactionSql>(sql: T): T {
  return new Proxy(sql, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (property === "unsafe") {
        return (query: string, params?: unknown[], options?: { prepare?: boolean }) =>
          target.unsafe(query, params as postgres.ParameterOrJSON<never>[], {
            ...options,
            prepare: true,
          });
      }
      if (property === "begin" || property === "savepoint") {
        return (...args: unknown[]) => {
          const callback = args.pop() as (tx: postgres.TransactionSql) => unknown;
          return (value as (...a: unknown[]) => unknown).apply(target, [
            ...args,
            (tx: postgres.TransactionSql) => callback(preparedStatements(tx)),
          ]);
        };
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
