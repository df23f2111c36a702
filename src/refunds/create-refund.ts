import { createRoute, z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import type { Transaction } from "../db/client.js";
import type { Refund } from "../db/schema.js";
import type { AppEnv } from "../http/env.js";
import { ApiError } from "../http/errors.js";
import { phaseProblem } from "../http/idempotency-problems.js";
import {
  IdempotencyKeyHeaderSchema,
  IdempotentReplayedHeader,
  problemResponses,
  WRITE_ERRORS,
} from "../http/openapi.js";
import type { Router } from "../http/router.js";
import {
  drive,
  type Execution,
  type PhaseStep,
  STARTED,
  type StoredResponse,
  sendStored,
} from "../idempotency/index.js";
import { type PaymentDeps, providerUnavailable } from "../payments/create-payment.js";
import { findPayment } from "../payments/payments.queries.js";
import type { RefundOutcome } from "../provider/stripe-provider.js";
import {
  findRefund,
  findRefundOfRecord,
  insertRefund,
  markRefundAccepted,
  markRefundFailed,
  markRefundSucceeded,
  reservedRefundAmount,
} from "./refunds.queries.js";
import {
  type CreateRefundBody,
  CreateRefundBodySchema,
  RefundSchema,
  refundJson,
} from "./refunds.schema.js";

/** Recovery point: the refund row exists (`pending`, its amount reserved); the provider may have been called. */
export const REFUND_CREATED = "refund_created";

export const createRefundRoute = createRoute({
  method: "post",
  path: "/v1/refunds",
  operationId: "createRefund",
  tags: ["Refunds"],
  summary: "Refund a payment",
  description:
    "Refunds all or part of a succeeded payment at the provider. Requires an `Idempotency-Key`. " +
    "Refunds of one payment never add up to more than it captured, even when several are " +
    "requested at once with different keys: the one that would exceed it gets 409 " +
    "`refund_exceeds_payment`. The order becomes `partially_refunded` or `refunded`.",
  request: {
    headers: z.object({ "idempotency-key": IdempotencyKeyHeaderSchema }),
    body: { required: true, content: { "application/json": { schema: CreateRefundBodySchema } } },
  },
  responses: {
    201: {
      description: "The refund was made, or accepted as `pending` (or this is its stored answer).",
      headers: {
        Location: { description: "The refund's URL.", schema: { type: "string" } },
        ...IdempotentReplayedHeader,
      },
      content: { "application/json": { schema: RefundSchema } },
    },
    ...problemResponses([
      ...WRITE_ERRORS,
      "payment_not_found",
      "payment_not_refundable",
      "refund_exceeds_payment",
      "refund_failed",
      "provider_unavailable",
    ]),
  },
});

export function registerCreateRefund(
  router: Router,
  idempotent: MiddlewareHandler<AppEnv>,
  deps: PaymentDeps,
) {
  router.openapi({ ...createRefundRoute, middleware: [idempotent] }, async (c) => {
    const stored = await runCreateRefund(c.var.execution, deps, c.req.valid("json"));
    // The stored response is one of the route's declared responses, built by its last phase.
    return sendStored(c, stored, false) as never;
  });
}

/** Drives a refund request from wherever its record stopped to its final response. */
export function runCreateRefund(
  execution: Execution,
  deps: PaymentDeps,
  input?: CreateRefundBody,
): Promise<StoredResponse> {
  return drive<typeof STARTED | typeof REFUND_CREATED>(execution, {
    [STARTED]: () => {
      if (!input) throw new Error("a refund cannot start without its request body");
      return execution.phase((tx) => startRefund(tx, execution, input));
    },
    [REFUND_CREATED]: () => sendRefund(execution, deps),
  });
}

/** Phase 1: lock the payment, check what remains refundable, reserve the amount. */
async function startRefund(
  tx: Transaction,
  execution: Execution,
  input: CreateRefundBody,
): Promise<PhaseStep> {
  const payment = await findPayment(tx, execution.tenantId, input.payment_id, { forUpdate: true });
  if (!payment) return phaseProblem(execution, new ApiError("payment_not_found"));
  if (payment.status !== "succeeded") {
    return phaseProblem(
      execution,
      new ApiError("payment_not_refundable", { detail: `This payment is ${payment.status}.` }),
    );
  }
  const remaining = payment.amount - (await reservedRefundAmount(tx, payment));
  const amount = input.amount ?? remaining;
  if (remaining <= 0 || amount > remaining) {
    return phaseProblem(
      execution,
      new ApiError("refund_exceeds_payment", {
        detail: `At most ${remaining} of this payment's ${payment.amount} can still be refunded.`,
        extensions: { payment_id: payment.id },
      }),
    );
  }
  await insertRefund(tx, { payment, amount, idempotencyRecordId: execution.recordId });
  return { next: REFUND_CREATED };
}

/** Phases 2 and 3: ask the provider, then record its answer and store the response. */
async function sendRefund(execution: Execution, deps: PaymentDeps): Promise<void> {
  const refund = await findRefundOfRecord(deps.db, execution.tenantId, execution.recordId);
  if (!refund) throw new Error(`no refund for record ${execution.recordId}`);
  let outcome: RefundOutcome | undefined;
  if (refund.status === "pending") {
    const payment = await findPayment(deps.db, refund.tenantId, refund.paymentId);
    if (!payment?.providerPaymentIntentId) {
      throw new Error(`payment ${refund.paymentId} has no provider reference`);
    }
    outcome = await deps.provider.refund({
      paymentIntentId: payment.providerPaymentIntentId,
      amount: refund.amount,
      metadata: { tenant_id: refund.tenantId, refund_id: refund.id, payment_id: payment.id },
      idempotencyKey: `${execution.recordId}:refund`,
    });
    if (outcome.kind === "unknown") throw providerUnavailable(outcome.reason);
  }
  await execution.phase(async (tx) => {
    // Lock order, as everywhere refunds are recorded: payment, then refund, then order.
    await findPayment(tx, refund.tenantId, refund.paymentId, { forUpdate: true });
    const locked = await findRefund(tx, refund.tenantId, refund.id, { forUpdate: true });
    if (!locked) throw new Error(`refund ${refund.id} vanished`);
    return refundStep(execution, await recordRefund(tx, locked, outcome));
  });
}

async function recordRefund(
  tx: Transaction,
  refund: Refund,
  outcome: RefundOutcome | undefined,
): Promise<Refund> {
  switch (outcome?.kind) {
    case undefined:
    case "unknown":
      return refund;
    case "succeeded":
      return markRefundSucceeded(tx, refund, outcome.refundId);
    case "pending":
      return markRefundAccepted(tx, refund, outcome.refundId);
    case "rejected":
      return markRefundFailed(tx, refund, outcome);
  }
}

function refundStep(execution: Execution, refund: Refund): PhaseStep {
  if (refund.status === "failed") {
    return phaseProblem(
      execution,
      new ApiError("refund_failed", {
        detail: refund.failureMessage ?? undefined,
        extensions: { payment_id: refund.paymentId, decline_code: refund.failureCode ?? "failed" },
      }),
    );
  }
  return {
    response: {
      status: 201,
      body: refundJson(refund),
      headers: { location: `/v1/refunds/${refund.id}` },
    },
  };
}
