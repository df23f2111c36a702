import { sql } from "drizzle-orm";
import {
  type AnyPgColumn,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
} from "drizzle-orm/pg-core";

export interface IdempotencyKeysTableOptions {
  /**
   * The column `tenant_id` references, such as `() => tenants.id`, for a host whose tenants
   * live in a table of their own. Default: none (tenant ids are free text).
   */
  tenantReference?: () => AnyPgColumn;
}

/**
 * Builds the `idempotency_keys` table: one row per (tenant, Idempotency-Key) with the request's
 * fingerprint, where its execution got to (recovery point and lease, for requests that span
 * several transactions), and the stored response once it finished.
 *
 * The layer's queries use `idempotencyKeys` below; a host that wants a foreign key on the tenant
 * builds its own copy with `tenantReference` for its migrations. Both describe the same columns.
 */
export function defineIdempotencyKeys(options: IdempotencyKeysTableOptions = {}) {
  const tenantId = text("tenant_id").notNull();
  if (options.tenantReference) tenantId.references(options.tenantReference);
  return pgTable(
    "idempotency_keys",
    {
      tenantId,
      key: text("key").notNull(),
      /** Identifies this incarnation of the key; provider idempotency keys derive from it. */
      recordId: text("record_id").notNull(),
      fingerprint: text("fingerprint").notNull(),
      method: text("method").notNull(),
      path: text("path").notNull(),
      recoveryPoint: text("recovery_point").notNull(),
      lockedUntil: timestamp("locked_until", { withTimezone: true }),
      attempt: integer("attempt").notNull().default(1),
      responseStatus: integer("response_status"),
      responseHeaders: jsonb("response_headers").$type<Record<string, string>>(),
      /** The body exactly as sent, so a replay is byte-identical. */
      responseBody: text("response_body"),
      createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
      expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    },
    (t) => [
      primaryKey({ columns: [t.tenantId, t.key] }),
      index("idempotency_keys_expires_at_idx").on(t.expiresAt),
      // The completer's work list: records stopped between phases (few, so a small index).
      index("idempotency_keys_unfinished_idx")
        .on(t.lockedUntil)
        .where(sql`recovery_point NOT IN ('started', 'finished')`),
    ],
  );
}

/** The layer's table, without a foreign key on the tenant. */
export const idempotencyKeys = defineIdempotencyKeys();

export type IdempotencyRecord = typeof idempotencyKeys.$inferSelect;
