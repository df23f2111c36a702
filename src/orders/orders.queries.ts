import { and, asc, desc, eq, inArray, lt, sql } from "drizzle-orm";
import type { Executor, Transaction } from "../db/client.js";
import { type Order, type OrderItem, type OrderStatus, orderItems, orders } from "../db/schema.js";
import { pipeline, sqlOf } from "../idempotency/index.js";
import { newId } from "../ids.js";
import type { CreateOrderBody } from "./orders.schema.js";

export interface OrderWithItems {
  order: Order;
  items: OrderItem[];
}

/**
 * Creates a pending order and its items; the total is computed here, never taken from input.
 * The rows are stamped with `at` (the idempotency layer's `c.var.transactionTime`: what a
 * column defaulting to `now()` would hold), so nothing needs reading back: the two INSERTs go
 * out as fixed SQL without waiting for their answer, to share a round trip with whatever the
 * transaction sends next (the idempotency record, COMMIT). One that fails aborts the
 * transaction, and the transaction reports it: the statements after it fail, and so does COMMIT.
 */
export function insertOrder(
  tx: Transaction,
  tenantId: string,
  input: CreateOrderBody,
  at: Date,
): OrderWithItems {
  const id = newId("ord");
  const items: OrderItem[] = input.items.map((item, index) => ({
    tenantId,
    orderId: id,
    line: index + 1,
    sku: item.sku,
    name: item.name,
    quantity: item.quantity,
    unitAmount: item.unit_amount,
    amount: item.quantity * item.unit_amount,
  }));
  const amountTotal = items.reduce((sum, line) => sum + line.amount, 0);
  const order: Order = {
    tenantId,
    id,
    status: "pending",
    currency: input.currency,
    amountTotal,
    amountRefunded: 0,
    customerEmail: input.customer_email ?? null,
    metadata: input.metadata ?? {},
    createdAt: at,
    updatedAt: at,
  };
  const itemValues: (string | number)[] = [tenantId, id];
  for (const item of items) {
    itemValues.push(item.line, item.sku, item.name, item.quantity, item.unitAmount, item.amount);
  }
  const sql = sqlOf(tx);
  const written = pipeline([
    sql.unsafe(INSERT_ORDER, [
      tenantId,
      id,
      order.currency,
      amountTotal,
      order.customerEmail,
      JSON.stringify(order.metadata),
      at.toISOString(),
    ]),
    sql.unsafe(insertItemsSql(items.length), itemValues),
  ]);
  written.catch(() => {}); // reported by the transaction, see above
  return { order, items };
}

const INSERT_ORDER = `INSERT INTO orders (tenant_id, id, status, currency, amount_total,
    customer_email, metadata, created_at, updated_at)
  VALUES ($1, $2, 'pending', $3, $4, $5, $6::jsonb, $7, $7)`;

/** The items INSERT for `count` lines, one text per count (so one prepared statement each). */
const insertItemsSql = (() => {
  const texts: string[] = [];
  return (count: number): string => {
    let text = texts[count];
    if (text === undefined) {
      const rows = Array.from({ length: count }, (_, i) => {
        const p = 3 + i * 6;
        return `($1, $2, $${p}, $${p + 1}, $${p + 2}, $${p + 3}, $${p + 4}, $${p + 5})`;
      });
      text = `INSERT INTO order_items (tenant_id, order_id, line, sku, name, quantity,
    unit_amount, amount) VALUES ${rows.join(", ")}`;
      texts[count] = text;
    }
    return text;
  };
})();

/** An order and its items. */
export async function findOrder(
  executor: Executor,
  tenantId: string,
  id: string,
): Promise<OrderWithItems | undefined> {
  const [order] = await executor
    .select()
    .from(orders)
    .where(and(eq(orders.tenantId, tenantId), eq(orders.id, id)));
  if (!order) return undefined;
  const items = await itemsOf(executor, tenantId, [id]);
  return { order, items };
}

/** One page of orders, newest first, after the `startingAfter` cursor. */
export async function listOrders(
  executor: Executor,
  tenantId: string,
  page: { limit: number; startingAfter?: string },
): Promise<{ data: OrderWithItems[]; hasMore: boolean }> {
  const rows = await executor
    .select()
    .from(orders)
    .where(
      and(
        eq(orders.tenantId, tenantId),
        page.startingAfter ? lt(orders.id, page.startingAfter) : undefined,
      ),
    )
    .orderBy(desc(orders.id))
    .limit(page.limit + 1);
  const pageRows = rows.slice(0, page.limit);
  const items = await itemsOf(
    executor,
    tenantId,
    pageRows.map((order) => order.id),
  );
  return {
    data: pageRows.map((order) => ({
      order,
      items: items.filter((item) => item.orderId === order.id),
    })),
    hasMore: rows.length > page.limit,
  };
}

export async function updateOrderStatus(
  tx: Transaction,
  tenantId: string,
  id: string,
  status: OrderStatus,
): Promise<Order> {
  const [order] = await tx
    .update(orders)
    .set({ status, updatedAt: sql`now()` })
    .where(and(eq(orders.tenantId, tenantId), eq(orders.id, id)))
    .returning();
  if (!order) throw new Error(`order ${id} vanished while locked`);
  return order;
}

async function itemsOf(executor: Executor, tenantId: string, orderIds: string[]) {
  if (orderIds.length === 0) return [];
  return executor
    .select()
    .from(orderItems)
    .where(and(eq(orderItems.tenantId, tenantId), inArray(orderItems.orderId, orderIds)))
    .orderBy(asc(orderItems.orderId), asc(orderItems.line));
}

/**
 * Locks an order row until the transaction ends and reads, in the same round trip, its items
 * (when asked) and whether a payment of it is processing or succeeded. The statements run in
 * order on the transaction's connection, so the payment check sees what was committed once the
 * lock was granted: the lock serialises a cancel with a payment's first phase, and neither can
 * miss the other's payment.
 */
export async function lockOrder(
  tx: Transaction,
  tenantId: string,
  id: string,
  options: { items: boolean },
): Promise<(OrderWithItems & { hasLivePayment: boolean }) | undefined> {
  const sql = sqlOf(tx);
  const ref = [tenantId, id];
  const [[row], itemRows, live] = await pipeline([
    sql.unsafe<OrderRow[]>(LOCK_ORDER, ref),
    options.items ? sql.unsafe<ItemRow[]>(ITEMS_OF_ORDER, ref) : Promise.resolve([]),
    sql.unsafe(LIVE_PAYMENT, ref),
  ]);
  if (!row) return undefined;
  return {
    order: orderOf(row),
    items: itemRows.map(itemOf),
    hasLivePayment: live.length > 0,
  };
}

/** A row as postgres.js returns it under drizzle's parsers: bigint and timestamps as text. */
type OrderRow = Omit<Order, "amountTotal" | "amountRefunded" | "createdAt" | "updatedAt"> & {
  amountTotal: string;
  amountRefunded: string;
  createdAt: string;
  updatedAt: string;
};
type ItemRow = Omit<OrderItem, "unitAmount" | "amount"> & { unitAmount: string; amount: string };

const orderOf = (row: OrderRow): Order => ({
  ...row,
  amountTotal: Number(row.amountTotal),
  amountRefunded: Number(row.amountRefunded),
  createdAt: new Date(row.createdAt),
  updatedAt: new Date(row.updatedAt),
});

const itemOf = (row: ItemRow): OrderItem => ({
  ...row,
  unitAmount: Number(row.unitAmount),
  amount: Number(row.amount),
});

const LOCK_ORDER = `SELECT tenant_id AS "tenantId", id, status, currency,
    amount_total AS "amountTotal", amount_refunded AS "amountRefunded",
    customer_email AS "customerEmail", metadata, created_at AS "createdAt",
    updated_at AS "updatedAt"
  FROM orders WHERE tenant_id = $1 AND id = $2 FOR UPDATE`;
const ITEMS_OF_ORDER = `SELECT tenant_id AS "tenantId", order_id AS "orderId", line, sku, name,
    quantity, unit_amount AS "unitAmount", amount
  FROM order_items WHERE tenant_id = $1 AND order_id = $2 ORDER BY line`;
const LIVE_PAYMENT = `SELECT 1 AS live FROM payments
  WHERE tenant_id = $1 AND order_id = $2 AND status IN ('processing', 'succeeded') LIMIT 1`;
