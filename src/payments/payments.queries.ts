import { and, eq, sql } from "drizzle-orm";
import type { Executor, Transaction } from "../db/client.js";
import { type Order, orders, type Payment, payments } from "../db/schema.js";
import { newId } from "../ids.js";

export async function insertPayment(
  tx: Transaction,
  params: {
    tenantId: string;
    order: Order;
    paymentMethod: string;
    idempotencyRecordId: string;
  },
): Promise<Payment> {
  const [payment] = await tx
    .insert(payments)
    .values({
      tenantId: params.tenantId,
      id: newId("pay"),
      orderId: params.order.id,
      status: "processing",
      amount: params.order.amountTotal,
      currency: params.order.currency,
      paymentMethod: params.paymentMethod,
      idempotencyRecordId: params.idempotencyRecordId,
    })
    .returning();
  if (!payment) throw new Error("payment insert returned no row");
  return payment;
}

export async function findPayment(
  executor: Executor,
  tenantId: string,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<Payment | undefined> {
  const query = executor
    .select()
    .from(payments)
    .where(and(eq(payments.tenantId, tenantId), eq(payments.id, id)));
  const [payment] = options.forUpdate ? await query.for("update") : await query;
  return payment;
}

/** The payment a multi-phase request created, found again by the request's record. */
export async function findPaymentOfRecord(
  executor: Executor,
  tenantId: string,
  recordId: string,
): Promise<Payment | undefined> {
  const [payment] = await executor
    .select()
    .from(payments)
    .where(and(eq(payments.tenantId, tenantId), eq(payments.idempotencyRecordId, recordId)));
  return payment;
}

/**
 * Records a successful charge: payment `succeeded`, order `paid`. Only a `processing` payment
 * moves, so the API's last phase and a webhook for the same charge apply it once between them,
 * in whichever order they arrive.
 *
 * @returns the payment as it now is
 */
export async function markPaymentSucceeded(
  tx: Transaction,
  payment: Payment,
  intentId: string,
): Promise<Payment> {
  const [updated] = await tx
    .update(payments)
    .set({
      status: "succeeded",
      providerPaymentIntentId: intentId,
      updatedAt: sql`now()`,
    })
    .where(paymentStillProcessing(payment))
    .returning();
  if (!updated) return reload(tx, payment);
  await tx
    .update(orders)
    .set({ status: "paid", updatedAt: sql`now()` })
    .where(
      and(
        eq(orders.tenantId, payment.tenantId),
        eq(orders.id, payment.orderId),
        eq(orders.status, "pending"),
      ),
    );
  return updated;
}

/** Records a declined or refused charge; the order stays `pending`, payable again. */
export async function markPaymentFailed(
  tx: Transaction,
  payment: Payment,
  failure: { intentId: string | null; code: string; message: string },
): Promise<Payment> {
  const [updated] = await tx
    .update(payments)
    .set({
      status: "failed",
      providerPaymentIntentId: failure.intentId,
      failureCode: failure.code,
      failureMessage: failure.message,
      updatedAt: sql`now()`,
    })
    .where(paymentStillProcessing(payment))
    .returning();
  return updated ?? reload(tx, payment);
}

function paymentStillProcessing(payment: Payment) {
  return and(
    eq(payments.tenantId, payment.tenantId),
    eq(payments.id, payment.id),
    eq(payments.status, "processing"),
  );
}

async function reload(tx: Transaction, payment: Payment): Promise<Payment> {
  const current = await findPayment(tx, payment.tenantId, payment.id);
  if (!current) throw new Error(`payment ${payment.id} vanished`);
  return current;
}
