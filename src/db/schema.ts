import { sql } from "drizzle-orm";
import {
  bigint,
  check,
  customType,
  foreignKey,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
} from "drizzle-orm/pg-core";

/**
 * Prefixed, time-ordered ids (`ord_01j...`). Byte-order collation makes `ORDER BY id` the
 * creation order whatever the database's default locale, which keyset pagination relies on.
 */
const sortableId = customType<{ data: string }>({
  dataType: () => 'text COLLATE "C"',
});

const createdAt = () => timestamp("created_at", { withTimezone: true }).notNull().defaultNow();
const money = (name: string) => bigint(name, { mode: "number" });

export const tenants = pgTable("tenants", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  apiKeyHash: text("api_key_hash").notNull().unique(),
  createdAt: createdAt(),
});

/**
 * One row per (tenant, Idempotency-Key): the request's fingerprint, where its execution got to
 * (recovery point and lease, for requests that span several transactions), and the stored
 * response once it finished.
 */
export const idempotencyKeys = pgTable(
  "idempotency_keys",
  {
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
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
    createdAt: createdAt(),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.key] }),
    index("idempotency_keys_expires_at_idx").on(t.expiresAt),
  ],
);

export const ORDER_STATUSES = [
  "pending",
  "paid",
  "cancelled",
  "partially_refunded",
  "refunded",
] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

export const orders = pgTable(
  "orders",
  {
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    id: sortableId("id").notNull(),
    status: text("status").$type<OrderStatus>().notNull(),
    currency: text("currency").notNull(),
    amountTotal: money("amount_total").notNull(),
    amountRefunded: money("amount_refunded").notNull().default(0),
    customerEmail: text("customer_email"),
    metadata: jsonb("metadata").$type<Record<string, string>>().notNull(),
    createdAt: createdAt(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.id] }),
    check(
      "orders_status_check",
      sql.raw(`status IN (${ORDER_STATUSES.map((s) => `'${s}'`).join(", ")})`),
    ),
    check(
      "orders_amounts_check",
      sql`amount_total >= 0 AND amount_refunded BETWEEN 0 AND amount_total`,
    ),
  ],
);

export const orderItems = pgTable(
  "order_items",
  {
    tenantId: text("tenant_id").notNull(),
    orderId: sortableId("order_id").notNull(),
    line: integer("line").notNull(),
    sku: text("sku").notNull(),
    name: text("name").notNull(),
    quantity: integer("quantity").notNull(),
    unitAmount: money("unit_amount").notNull(),
    amount: money("amount").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.orderId, t.line] }),
    foreignKey({
      columns: [t.tenantId, t.orderId],
      foreignColumns: [orders.tenantId, orders.id],
    }).onDelete("cascade"),
  ],
);

export type Tenant = typeof tenants.$inferSelect;
export type IdempotencyRecord = typeof idempotencyKeys.$inferSelect;
export type Order = typeof orders.$inferSelect;
export type OrderItem = typeof orderItems.$inferSelect;
