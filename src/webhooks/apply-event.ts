import type { Database, Transaction } from "../db/client.js";
import type { Payment } from "../db/schema.js";
import { webhookEvents } from "../db/schema.js";
import {
  findPayment,
  markPaymentFailed,
  markPaymentSucceeded,
} from "../payments/payments.queries.js";
import { findRefund, markRefundFailed, markRefundSucceeded } from "../refunds/refunds.queries.js";
import type { ChargeObject, HandledEvent, PaymentIntentObject } from "./webhook-events.schema.js";

/** What a delivered event did: applied now, seen before, or nothing of ours. */
export type EventResult = "applied" | "duplicate" | "ignored";

export interface EventOutcome {
  result: EventResult;
  /**
   * Why an event that names one of our records was ignored: its object does not match what we
   * recorded (another intent, tenant, amount or outcome). Such an event changes nothing.
   */
  mismatch?: string;
}

/**
 * Applies a provider event to our records exactly once: the event id is recorded in the same
 * transaction as its effect, so a redelivery finds it and does nothing. The effects are the
 * same state moves the API's last phases make (`processing` → `succeeded`, `pending` →
 * `succeeded`...), which only ever move forward, so an event and the API response for the same
 * charge apply it once between them in whichever order they arrive.
 *
 * The objects carry our tenant and row ids in their metadata, set when we created them. Those
 * are claims, checked against the payment they name before anything is written: an event that
 * disagrees with our record is ignored, and neither its id nor its effect is kept.
 */
export async function applyProviderEvent(db: Database, event: HandledEvent): Promise<EventOutcome> {
  switch (event.type) {
    case "payment_intent.succeeded":
    case "payment_intent.payment_failed": {
      const intent = event.data.object;
      const tenantId = intent.metadata.tenant_id;
      const paymentId = intent.metadata.payment_id;
      if (!tenantId || !paymentId) return { result: "ignored" };
      const succeeded = event.type === "payment_intent.succeeded";
      return db.transaction(async (tx) => {
        const payment = await findPayment(tx, tenantId, paymentId, { forUpdate: true });
        const mismatch = intentMismatch(payment, intent, succeeded);
        if (mismatch || !payment) return { result: "ignored", mismatch };
        return once(tx, tenantId, event, async () => {
          if (succeeded) {
            await markPaymentSucceeded(tx, payment, intent.id);
          } else {
            const error = intent.last_payment_error;
            await markPaymentFailed(tx, payment, {
              intentId: intent.id,
              code: error?.decline_code ?? error?.code ?? "declined",
              message: error?.message ?? "The payment failed.",
            });
          }
        });
      });
    }
    case "charge.refunded": {
      const charge = event.data.object;
      const providerRefunds = charge.refunds?.data ?? [];
      const first = providerRefunds.find((r) => r.metadata?.refund_id);
      const tenantId = first?.metadata?.tenant_id;
      const paymentId = first?.metadata?.payment_id;
      if (!tenantId || !paymentId) return { result: "ignored" };
      const ours = providerRefunds
        .filter((r) => r.metadata?.tenant_id === tenantId && r.metadata.payment_id === paymentId)
        .sort((a, b) => String(a.metadata?.refund_id).localeCompare(String(b.metadata?.refund_id)));
      return db.transaction(async (tx) => {
        // Lock order, as everywhere refunds are recorded: payment, then refunds by id, then order.
        const payment = await findPayment(tx, tenantId, paymentId, { forUpdate: true });
        const mismatch = chargeMismatch(payment, charge);
        if (mismatch) return { result: "ignored", mismatch };
        return once(tx, tenantId, event, async () => {
          for (const providerRefund of ours) {
            const refundId = providerRefund.metadata?.refund_id;
            if (!refundId) continue;
            const refund = await findRefund(tx, tenantId, refundId, { forUpdate: true });
            if (!refund || refund.paymentId !== paymentId) continue;
            if (refund.providerRefundId && refund.providerRefundId !== providerRefund.id) continue;
            if (providerRefund.status === "succeeded") {
              await markRefundSucceeded(tx, refund, providerRefund.id);
            } else if (providerRefund.status === "failed" || providerRefund.status === "canceled") {
              await markRefundFailed(tx, refund, {
                code: providerRefund.failure_reason ?? providerRefund.status,
                message: `refund ${providerRefund.status}`,
              });
            }
          }
        });
      });
    }
  }
}

/** Why a payment intent event does not describe `payment`, or undefined when it does. */
function intentMismatch(
  payment: Payment | undefined,
  intent: PaymentIntentObject,
  succeeded: boolean,
): string | undefined {
  if (!payment) return "no such payment for the tenant the event names";
  if (intent.metadata.order_id !== undefined && intent.metadata.order_id !== payment.orderId) {
    return "the intent names another order";
  }
  if (payment.providerPaymentIntentId && payment.providerPaymentIntentId !== intent.id) {
    return "the payment was made with another payment intent";
  }
  if (intent.amount !== payment.amount || intent.currency !== payment.currency.toLowerCase()) {
    return "the intent's amount or currency differs from the payment's";
  }
  if (payment.status === (succeeded ? "failed" : "succeeded")) {
    return `the payment is recorded ${payment.status}, the event says otherwise`;
  }
  return undefined;
}

/** Why a refunded charge does not belong to `payment`, or undefined when it does. */
function chargeMismatch(payment: Payment | undefined, charge: ChargeObject): string | undefined {
  if (!payment) return "no such payment for the tenant the event names";
  const intentId = charge.payment_intent;
  if (intentId && payment.providerPaymentIntentId !== intentId) {
    return "the charge belongs to another payment intent";
  }
  return undefined;
}

async function once(
  tx: Transaction,
  tenantId: string,
  event: HandledEvent,
  apply: () => Promise<void>,
): Promise<EventOutcome> {
  const recorded = await tx
    .insert(webhookEvents)
    .values({ tenantId, eventId: event.id, type: event.type })
    .onConflictDoNothing()
    .returning({ eventId: webhookEvents.eventId });
  if (recorded.length === 0) return { result: "duplicate" };
  await apply();
  return { result: "applied" };
}
