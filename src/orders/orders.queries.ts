import { and, asc, desc, eq, inArray, lt, sql } from "drizzle-orm";
import type { Executor, Transaction } from "../db/client.js";
import { type Order, type OrderItem, type OrderStatus, orderItems, orders } from "../db/schema.js";
import { newId } from "../ids.js";
import type { CreateOrderBody } from "./orders.schema.js";

export interface OrderWithItems {
  order: Order;
  items: OrderItem[];
}

/** Creates a pending order and its items; the total is computed here, never taken from input. */
export async function insertOrder(
  tx: Transaction,
  tenantId: string,
  input: CreateOrderBody,
): Promise<OrderWithItems> {
  const id = newId("ord");
  const lines = input.items.map((item, index) => ({
    tenantId,
    orderId: id,
    line: index + 1,
    sku: item.sku,
    name: item.name,
    quantity: item.quantity,
    unitAmount: item.unit_amount,
    amount: item.quantity * item.unit_amount,
  }));
  const [order] = await tx
    .insert(orders)
    .values({
      tenantId,
      id,
      status: "pending",
      currency: input.currency,
      amountTotal: lines.reduce((sum, line) => sum + line.amount, 0),
      customerEmail: input.customer_email ?? null,
      metadata: input.metadata ?? {},
    })
    .returning();
  const items = await tx.insert(orderItems).values(lines).returning();
  if (!order) throw new Error("order insert returned no row");
  return { order, items };
}

/** An order and its items; `forUpdate` locks the order row until the transaction ends. */
export async function findOrder(
  executor: Executor,
  tenantId: string,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<OrderWithItems | undefined> {
  const query = executor
    .select()
    .from(orders)
    .where(and(eq(orders.tenantId, tenantId), eq(orders.id, id)));
  const [order] = options.forUpdate ? await query.for("update") : await query;
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

/** The order row alone, locked until the transaction ends. */
export async function lockOrderRow(
  tx: Transaction,
  tenantId: string,
  id: string,
): Promise<Order | undefined> {
  const [order] = await tx
    .select()
    .from(orders)
    .where(and(eq(orders.tenantId, tenantId), eq(orders.id, id)))
    .for("update");
  return order;
}
