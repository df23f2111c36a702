import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import * as schema from "./schema.js";

export type Database = PostgresJsDatabase<typeof schema>;
/** The transaction handle drizzle passes to `db.transaction(fn)`. */
export type Transaction = Parameters<Parameters<Database["transaction"]>[0]>[0];
/** What query functions take: the pool, or the transaction of the request they serve. */
export type Executor = Database | Transaction;

/**
 * What the pool is doing, as far as this process can tell. postgres.js exposes no pool
 * statistics, so transactions are counted on their way through `begin`: a transaction holds
 * one connection from its BEGIN to its COMMIT, and every idempotent request is one (or, for
 * multi-phase requests, several in turn). Single statements outside a transaction (an API key
 * lookup, a GET, the readiness probe) hold a connection for one round trip and are not counted.
 */
export interface PoolStats {
  /** The configured pool size. */
  max: number;
  /** Transactions holding a connection now. */
  activeTransactions: number;
  /** Transactions waiting for a free connection. */
  waitingTransactions: number;
}

export interface DatabaseHandle {
  db: Database;
  /** The underlying postgres.js pool, for reserved connections and shutdown. */
  client: postgres.Sql;
  /** A snapshot of the pool's use. */
  poolStats(): PoolStats;
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
  const pool = postgres(url, {
    max: options.max ?? 10,
    connect_timeout: 10,
    idle_timeout: 60,
    // Reconnect delay after failed attempts, in seconds. The driver's default grows to 20 s,
    // so a database back after a restart stayed unused for that long; 1 s at most keeps the
    // attempts cheap while the database is away and the recovery within a second of its return.
    backoff: (attempts: number) => Math.min(0.05 * 2 ** attempts, 1),
    onnotice: () => {},
    connection: {
      application_name: options.applicationName ?? "idempotent-payments",
      // On Citus, pass `SET LOCAL` (the idempotency claim's lock_timeout) on to the node that
      // holds the shard; plain PostgreSQL keeps it as an unused placeholder setting.
      "citus.propagate_set_commands": "local",
    },
  });
  const stats = { active: 0, waiting: 0 };
  const client = countTransactions(pool, stats);
  const db = drizzle(preparedStatements(client), { schema });
  return {
    db,
    client,
    poolStats: () => ({
      max: pool.options.max,
      activeTransactions: stats.active,
      waitingTransactions: stats.waiting,
    }),
    close: () => pool.end({ timeout: 5 }),
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

/**
 * The pool with `begin` wrapped: a transaction waits until postgres.js has a connection and has
 * sent BEGIN on it, then runs its callback, which is when it holds the connection.
 */
function countTransactions(
  pool: postgres.Sql,
  stats: { active: number; waiting: number },
): postgres.Sql {
  const begin = (...args: unknown[]) => {
    const callback = args.pop() as (tx: postgres.TransactionSql) => unknown;
    let entered = false;
    stats.waiting++;
    const counted = async (tx: postgres.TransactionSql) => {
      entered = true;
      stats.waiting--;
      stats.active++;
      try {
        return await callback(tx);
      } finally {
        stats.active--;
      }
    };
    return (pool.begin as (...a: unknown[]) => Promise<unknown>)(...args, counted).finally(() => {
      if (!entered) stats.waiting--;
    });
  };
  return new Proxy(pool, {
    get: (target, property, receiver) =>
      property === "begin" ? begin : Reflect.get(target, property, receiver),
  });
}
