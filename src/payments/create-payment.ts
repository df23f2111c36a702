import { createRoute, z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import type { Database, Transaction } from "../db/client.js";
import type { Payment } from "../db/schema.js";
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
import { lockOrder } from "../orders/orders.queries.js";
import type { ChargeOutcome, PaymentProvider } from "../provider/stripe-provider.js";
import {
  findPayment,
  findPaymentOfRecord,
  insertPayment,
  markPaymentFailed,
  markPaymentSucceeded,
} from "./payments.queries.js";
import {
  type CreatePaymentBody,
  CreatePaymentBodySchema,
  PaymentSchema,
  paymentJson,
} from "./payments.schema.js";

/** Recovery point: the payment row exists (`processing`); the provider may have been called. */
export const PAYMENT_CREATED = "payment_created";

/**
 * `Retry-After` when the provider's answer is unknown. Two seconds lets a brief network blip
 * or provider hiccup pass without making the client wait long for an answer it can get.
 */
export const PROVIDER_RETRY_AFTER_SECONDS = 2;

/** The failure code recorded when the provider rejects the payment method itself. */
const INVALID_PAYMENT_METHOD = "invalid_payment_method";

export interface PaymentDeps {
  db: Database;
  provider: PaymentProvider;
}

export const createPaymentRoute = createRoute({
  method: "post",
  path: "/v1/payments",
  operationId: "createPayment",
  tags: ["Payments"],
  summary: "Pay an order",
  description:
    "Charges the order's total in its currency with the payment method, through the payment " +
    "provider. Requires an `Idempotency-Key`: a retry never charges twice, even after a crash " +
    "or a lost provider response. A declined card is a stored 402 and the order stays payable " +
    "with a new key; a 503 means the provider's answer is not known yet: retry with the same key.",
  request: {
    headers: z.object({ "idempotency-key": IdempotencyKeyHeaderSchema }),
    body: { required: true, content: { "application/json": { schema: CreatePaymentBodySchema } } },
  },
  responses: {
    201: {
      description: "The order was paid (or this is the stored answer of that payment).",
      headers: {
        Location: { description: "The payment's URL.", schema: { type: "string" } },
        ...IdempotentReplayedHeader,
      },
      content: { "application/json": { schema: PaymentSchema } },
    },
    ...problemResponses([
      ...WRITE_ERRORS,
      "order_not_found",
      "order_not_payable",
      "payment_declined",
      "payment_method_invalid",
      "payment_request_invalid",
      "provider_unavailable",
    ]),
  },
});

export function registerCreatePayment(
  router: Router,
  idempotent: MiddlewareHandler<AppEnv>,
  deps: PaymentDeps,
) {
  router.openapi({ ...createPaymentRoute, middleware: [idempotent] }, async (c) => {
    const stored = await runCreatePayment(c.var.execution, deps, c.req.valid("json"));
    // The stored response is one of the route's declared responses, built by its last phase.
    return sendStored(c, stored, false) as never;
  });
}

/**
 * Drives a payment request from wherever its record stopped to its final response: the HTTP
 * handler on a first request or a retry, and the completer for a client that never came back
 * (which has no request body, and needs none past the first phase).
 */
export function runCreatePayment(
  execution: Execution,
  deps: PaymentDeps,
  input?: CreatePaymentBody,
): Promise<StoredResponse> {
  return drive<typeof STARTED | typeof PAYMENT_CREATED>(execution, {
    [STARTED]: () => {
      if (!input) throw new Error("a payment cannot start without its request body");
      return execution.phase((tx) => startPayment(tx, execution, input));
    },
    [PAYMENT_CREATED]: () => chargePayment(execution, deps),
  });
}

/** Phase 1: lock the order, check it can be paid, create the `processing` payment. */
async function startPayment(
  tx: Transaction,
  execution: Execution,
  input: CreatePaymentBody,
): Promise<PhaseStep> {
  const locked = await lockOrder(tx, execution.tenantId, input.order_id, { items: false });
  if (!locked) return phaseProblem(execution, new ApiError("order_not_found"));
  const { order } = locked;
  if (order.status !== "pending") {
    return phaseProblem(
      execution,
      new ApiError("order_not_payable", { detail: `This order is ${order.status}.` }),
    );
  }
  if (order.amountTotal === 0) {
    return phaseProblem(
      execution,
      new ApiError("order_not_payable", { detail: "An order with a total of 0 needs no payment." }),
    );
  }
  if (locked.hasLivePayment) {
    return phaseProblem(
      execution,
      new ApiError("order_not_payable", {
        detail: "A payment of this order is already in progress.",
      }),
    );
  }
  await insertPayment(tx, {
    tenantId: execution.tenantId,
    order,
    paymentMethod: input.payment_method,
    idempotencyRecordId: execution.recordId,
  });
  return { next: PAYMENT_CREATED };
}

/**
 * Phases 2 and 3: ask the provider (outside any transaction), then record its answer and store
 * the response in one transaction. A webhook may have recorded the outcome first; then the
 * provider is not asked again and the stored response describes the payment as recorded.
 */
async function chargePayment(execution: Execution, deps: PaymentDeps): Promise<void> {
  const payment = await findPaymentOfRecord(deps.db, execution.tenantId, execution.recordId);
  if (!payment) throw new Error(`no payment for record ${execution.recordId}`);
  let outcome: ChargeOutcome | undefined;
  if (payment.status === "processing") {
    outcome = await deps.provider.charge({
      amount: payment.amount,
      currency: payment.currency,
      paymentMethod: payment.paymentMethod,
      metadata: { tenant_id: payment.tenantId, order_id: payment.orderId, payment_id: payment.id },
      idempotencyKey: `${execution.recordId}:charge`,
    });
    if (outcome.kind === "unknown") throw providerUnavailable(outcome.reason);
  }
  await execution.phase(async (tx) => {
    const locked = await findPayment(tx, payment.tenantId, payment.id, { forUpdate: true });
    if (!locked) throw new Error(`payment ${payment.id} vanished`);
    const recorded = await recordCharge(tx, locked, outcome);
    return paymentStep(execution, recorded, outcome);
  });
}

async function recordCharge(
  tx: Transaction,
  payment: Payment,
  outcome: ChargeOutcome | undefined,
): Promise<Payment> {
  switch (outcome?.kind) {
    case undefined:
    case "unknown":
      return payment;
    case "succeeded":
      return markPaymentSucceeded(tx, payment, outcome.intentId);
    case "declined":
      return markPaymentFailed(tx, payment, outcome);
    case "invalid":
      return markPaymentFailed(tx, payment, {
        intentId: null,
        code: outcome.param === "payment_method" ? INVALID_PAYMENT_METHOD : outcome.code,
        message: outcome.message,
      });
  }
}

/**
 * The final response for a payment in its recorded state; `outcome` is the provider's answer
 * just recorded, if it was asked, which tells a refused parameter from a decline.
 */
function paymentStep(execution: Execution, payment: Payment, outcome?: ChargeOutcome): PhaseStep {
  switch (payment.status) {
    case "succeeded":
      return {
        response: {
          status: 201,
          body: paymentJson(payment),
          headers: { location: `/v1/payments/${payment.id}` },
        },
      };
    case "failed": {
      if (outcome?.kind === "invalid" && outcome.param !== "payment_method") {
        return phaseProblem(
          execution,
          new ApiError("payment_request_invalid", {
            detail: `The payment provider refused the payment: ${outcome.message} Nothing was charged.`,
            extensions: { payment_id: payment.id, provider_code: outcome.code },
          }),
        );
      }
      const invalidMethod = payment.failureCode === INVALID_PAYMENT_METHOD;
      return phaseProblem(
        execution,
        new ApiError(invalidMethod ? "payment_method_invalid" : "payment_declined", {
          detail: payment.failureMessage ?? undefined,
          extensions: {
            payment_id: payment.id,
            ...(invalidMethod ? {} : { decline_code: payment.failureCode ?? "declined" }),
          },
        }),
      );
    }
    case "processing":
      throw providerUnavailable("the payment is still processing at the provider");
  }
}

export function providerUnavailable(reason: string): ApiError {
  return new ApiError("provider_unavailable", {
    headers: { "Retry-After": String(PROVIDER_RETRY_AFTER_SECONDS) },
    detail: `The payment provider's answer is not known yet (${reason}). Retry with the same Idempotency-Key; nothing is charged twice.`,
  });
}
