import type { Database, Transaction } from "../db/client.js";
import type { Tenant } from "../db/schema.js";
import type { IdempotencyVariables } from "../idempotency/index.js";

/** The Hono environment of this app: what middleware puts on the context for handlers. */
export interface AppEnv {
  Variables: IdempotencyVariables<Transaction> & {
    requestId: string;
    /** The pool. Handlers of idempotent requests must use `tx` instead. */
    db: Database;
    tenant: Tenant;
  };
}
