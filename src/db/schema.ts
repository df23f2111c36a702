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
  uniqueIndex,
} from "drizzle-orm/pg-core";
// The schema file itself, not the index: drizzle-kit loads schemas through require().
import { defineIdempotencyKeys } from "../idempotency/schema.js";

/**
 * Prefixed, time-ordered ids (`ord_01j...`). Byte-order collation makes `ORDER BY id` the
 * creation order whatever the database's default locale, which keyset pagination relies on.
 */
const sortableId = customType<{ data: string }>({
  dataType: () => 'text COLLATE "C"',
});

const statusCheck = (name: string, statuses: readonly string[]) =>
  check(name, sql.raw(`status IN (${statuses.map((s) => `'${s}'`).join(", ")})`));

const createdAt = () => timestamp("created_at", { withTimezone: true }).notNull().defaultNow();
const money = (name: string) => bigint(name, { mode: "number" });

export const tenants = pgTable("tenants", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  apiKeyHash: text("api_key_hash").notNull().unique(),
  createdAt: createdAt(),
});

/**
 * The idempotency layer's table (src/idempotency/schema.ts), here with its foreign key to
 * `tenants`, so that drizzle-kit generates it into this app's migrations.
 */
export const idempotencyKeys = defineIdempotencyKeys({ tenantReference: () => tenants.id });

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
    statusCheck("orders_status_check", ORDER_STATUSES),
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

export const PAYMENT_STATUSES = ["processing", "succeeded", "failed"] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];

/**
 * A charge of an order at the payment provider. Created `processing` in the first phase of its
 * request, before the provider is called, so money taken at the provider always has a row.
 */
export const payments = pgTable(
  "payments",
  {
    tenantId: text("tenant_id").notNull(),
    id: sortableId("id").notNull(),
    orderId: sortableId("order_id").notNull(),
    status: text("status").$type<PaymentStatus>().notNull(),
    amount: money("amount").notNull(),
    amountRefunded: money("amount_refunded").notNull().default(0),
    currency: text("currency").notNull(),
    paymentMethod: text("payment_method").notNull(),
    providerPaymentIntentId: text("provider_payment_intent_id"),
    failureCode: text("failure_code"),
    failureMessage: text("failure_message"),
    /** The idempotency record (incarnation) whose request created this payment. */
    idempotencyRecordId: text("idempotency_record_id").notNull(),
    createdAt: createdAt(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.id] }),
    foreignKey({
      columns: [t.tenantId, t.orderId],
      foreignColumns: [orders.tenantId, orders.id],
    }),
    index("payments_order_idx").on(t.tenantId, t.orderId),
    uniqueIndex("payments_idempotency_record_idx").on(t.tenantId, t.idempotencyRecordId),
    statusCheck("payments_status_check", PAYMENT_STATUSES),
    check("payments_amounts_check", sql`amount > 0 AND amount_refunded BETWEEN 0 AND amount`),
  ],
);

export const REFUND_STATUSES = ["pending", "succeeded", "failed"] as const;
export type RefundStatus = (typeof REFUND_STATUSES)[number];

/**
 * A refund of (part of) a payment. Created `pending` in its request's first phase, which
 * reserves its amount against the payment under the payment's row lock.
 */
export const refunds = pgTable(
  "refunds",
  {
    tenantId: text("tenant_id").notNull(),
    id: sortableId("id").notNull(),
    paymentId: sortableId("payment_id").notNull(),
    orderId: sortableId("order_id").notNull(),
    status: text("status").$type<RefundStatus>().notNull(),
    amount: money("amount").notNull(),
    currency: text("currency").notNull(),
    providerRefundId: text("provider_refund_id"),
    failureCode: text("failure_code"),
    failureMessage: text("failure_message"),
    idempotencyRecordId: text("idempotency_record_id").notNull(),
    createdAt: createdAt(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.id] }),
    foreignKey({
      columns: [t.tenantId, t.paymentId],
      foreignColumns: [payments.tenantId, payments.id],
    }),
    index("refunds_payment_idx").on(t.tenantId, t.paymentId),
    uniqueIndex("refunds_idempotency_record_idx").on(t.tenantId, t.idempotencyRecordId),
    statusCheck("refunds_status_check", REFUND_STATUSES),
    check("refunds_amount_check", sql`amount > 0`),
  ],
);

/** Provider events already applied: a redelivered event finds its id here and does nothing. */
export const webhookEvents = pgTable(
  "webhook_events",
  {
    tenantId: text("tenant_id").notNull(),
    eventId: text("event_id").notNull(),
    type: text("type").notNull(),
    receivedAt: timestamp("received_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.eventId] })],
);

export type Tenant = typeof tenants.$inferSelect;
export type IdempotencyRecord = typeof idempotencyKeys.$inferSelect;
export type Order = typeof orders.$inferSelect;
export type OrderItem = typeof orderItems.$inferSelect;
export type Payment = typeof payments.$inferSelect;
export type Refund = typeof refunds.$inferSelect;
