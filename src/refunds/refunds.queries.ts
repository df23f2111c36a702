import { and, eq, inArray, sql } from "drizzle-orm";
import type { Executor, Transaction } from "../db/client.js";
import { orders, type Payment, payments, type Refund, refunds } from "../db/schema.js";
import { newId } from "../ids.js";

export async function insertRefund(
  tx: Transaction,
  params: { payment: Payment; amount: number; idempotencyRecordId: string },
): Promise<Refund> {
  const [refund] = await tx
    .insert(refunds)
    .values({
      tenantId: params.payment.tenantId,
      id: newId("re"),
      paymentId: params.payment.id,
      orderId: params.payment.orderId,
      status: "pending",
      amount: params.amount,
      currency: params.payment.currency,
      idempotencyRecordId: params.idempotencyRecordId,
    })
    .returning();
  if (!refund) throw new Error("refund insert returned no row");
  return refund;
}

export async function findRefund(
  executor: Executor,
  tenantId: string,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<Refund | undefined> {
  const query = executor
    .select()
    .from(refunds)
    .where(and(eq(refunds.tenantId, tenantId), eq(refunds.id, id)));
  const [refund] = options.forUpdate ? await query.for("update") : await query;
  return refund;
}

export async function findRefundOfRecord(
  executor: Executor,
  tenantId: string,
  recordId: string,
): Promise<Refund | undefined> {
  const [refund] = await executor
    .select()
    .from(refunds)
    .where(and(eq(refunds.tenantId, tenantId), eq(refunds.idempotencyRecordId, recordId)));
  return refund;
}

/**
 * What the payment's refunds already claim: succeeded ones and pending ones, which reserve their
 * amount from their first phase on. Read under the payment's row lock, this is what makes
 * concurrent refunds with different keys unable to exceed the payment together.
 */
export async function reservedRefundAmount(tx: Transaction, payment: Payment): Promise<number> {
  const [row] = await tx
    .select({ total: sql<string>`coalesce(sum(${refunds.amount}), 0)` })
    .from(refunds)
    .where(
      and(
        eq(refunds.tenantId, payment.tenantId),
        eq(refunds.paymentId, payment.id),
        inArray(refunds.status, ["pending", "succeeded"]),
      ),
    );
  return Number(row?.total ?? 0);
}

/**
 * Records a refund the provider made: refund `succeeded`, its amount added to the payment and
 * the order, the order `partially_refunded` or `refunded`. Only a `pending` refund moves, so
 * the API's last phase and the `charge.refunded` webhook apply it once between them.
 */
export async function markRefundSucceeded(
  tx: Transaction,
  refund: Refund,
  providerRefundId: string,
): Promise<Refund> {
  const [updated] = await tx
    .update(refunds)
    .set({ status: "succeeded", providerRefundId, updatedAt: sql`now()` })
    .where(refundStillPending(refund))
    .returning();
  if (!updated) return reload(tx, refund);
  await tx
    .update(payments)
    .set({
      amountRefunded: sql`${payments.amountRefunded} + ${refund.amount}`,
      updatedAt: sql`now()`,
    })
    .where(and(eq(payments.tenantId, refund.tenantId), eq(payments.id, refund.paymentId)));
  await tx
    .update(orders)
    .set({
      amountRefunded: sql`${orders.amountRefunded} + ${refund.amount}`,
      status: sql`CASE WHEN ${orders.amountRefunded} + ${refund.amount} >= ${orders.amountTotal}
        THEN 'refunded' ELSE 'partially_refunded' END`,
      updatedAt: sql`now()`,
    })
    .where(and(eq(orders.tenantId, refund.tenantId), eq(orders.id, refund.orderId)));
  return updated;
}

/** Notes the provider's id of a refund it accepted but has not completed yet. */
export async function markRefundAccepted(
  tx: Transaction,
  refund: Refund,
  providerRefundId: string,
): Promise<Refund> {
  const [updated] = await tx
    .update(refunds)
    .set({ providerRefundId, updatedAt: sql`now()` })
    .where(refundStillPending(refund))
    .returning();
  return updated ?? reload(tx, refund);
}

/** Records a refund the provider refused; its reserved amount is free again. */
export async function markRefundFailed(
  tx: Transaction,
  refund: Refund,
  failure: { code: string; message: string },
): Promise<Refund> {
  const [updated] = await tx
    .update(refunds)
    .set({
      status: "failed",
      failureCode: failure.code,
      failureMessage: failure.message,
      updatedAt: sql`now()`,
    })
    .where(refundStillPending(refund))
    .returning();
  return updated ?? reload(tx, refund);
}

function refundStillPending(refund: Refund) {
  return and(
    eq(refunds.tenantId, refund.tenantId),
    eq(refunds.id, refund.id),
    eq(refunds.status, "pending"),
  );
}

async function reload(tx: Transaction, refund: Refund): Promise<Refund> {
  const current = await findRefund(tx, refund.tenantId, refund.id);
  if (!current) throw new Error(`refund ${refund.id} vanished`);
  return current;
}
