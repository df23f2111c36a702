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
  const db = drizzle(client, { schema });
  return {
    db,
    client,
    close: () => client.end({ timeout: 5 }),
  };
}
