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
    onnotice: () => {},
    connection: { application_name: options.applicationName ?? "idempotent-payments" },
  });
  const stats = { active: 0, waiting: 0 };
  const client = countTransactions(pool, stats);
  const db = drizzle(client, { schema });
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
