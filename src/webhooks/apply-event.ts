import type Stripe from "stripe";
import type { Database, Transaction } from "../db/client.js";
import { webhookEvents } from "../db/schema.js";
import {
  findPayment,
  markPaymentFailed,
  markPaymentSucceeded,
} from "../payments/payments.queries.js";
import { findRefund, markRefundFailed, markRefundSucceeded } from "../refunds/refunds.queries.js";

/** What a delivered event did: applied now, seen before, or nothing of ours. */
export type EventResult = "applied" | "duplicate" | "ignored";

/**
 * Applies a provider event to our records exactly once: the event id is recorded in the same
 * transaction as its effect, so a redelivery finds it and does nothing. The effects are the
 * same state moves the API's last phases make (`processing` → `succeeded`, `pending` →
 * `succeeded`...), which only ever move forward, so an event and the API response for the same
 * charge apply it once between them in whichever order they arrive.
 *
 * The objects carry our tenant and row ids in their metadata, set when we created them.
 */
export async function applyProviderEvent(db: Database, event: Stripe.Event): Promise<EventResult> {
  switch (event.type) {
    case "payment_intent.succeeded":
    case "payment_intent.payment_failed": {
      const intent = event.data.object;
      const tenantId = intent.metadata?.tenant_id;
      const paymentId = intent.metadata?.payment_id;
      if (!tenantId || !paymentId) return "ignored";
      return once(db, tenantId, event, async (tx) => {
        const payment = await findPayment(tx, tenantId, paymentId, { forUpdate: true });
        if (!payment) return;
        if (event.type === "payment_intent.succeeded") {
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
    }
    case "charge.refunded": {
      const first = event.data.object.refunds?.data.find((r) => r.metadata?.refund_id);
      const tenantId = first?.metadata?.tenant_id;
      const paymentId = first?.metadata?.payment_id;
      if (!tenantId || !paymentId) return "ignored";
      const ours = (event.data.object.refunds?.data ?? [])
        .filter((r) => r.metadata?.tenant_id === tenantId && r.metadata.payment_id === paymentId)
        .sort((a, b) => String(a.metadata?.refund_id).localeCompare(String(b.metadata?.refund_id)));
      return once(db, tenantId, event, async (tx) => {
        // Lock order, as everywhere refunds are recorded: payment, then refunds by id, then order.
        await findPayment(tx, tenantId, paymentId, { forUpdate: true });
        for (const providerRefund of ours) {
          const refundId = providerRefund.metadata?.refund_id;
          if (!refundId) continue;
          const refund = await findRefund(tx, tenantId, refundId, { forUpdate: true });
          if (!refund) continue;
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
    }
    default:
      return "ignored";
  }
}

async function once(
  db: Database,
  tenantId: string,
  event: Stripe.Event,
  apply: (tx: Transaction) => Promise<void>,
): Promise<EventResult> {
  return db.transaction(async (tx) => {
    const recorded = await tx
      .insert(webhookEvents)
      .values({ tenantId, eventId: event.id, type: event.type })
      .onConflictDoNothing()
      .returning({ eventId: webhookEvents.eventId });
    if (recorded.length === 0) return "duplicate";
    await apply(tx);
    return "applied";
  });
}
