import type Stripe from "stripe";
import { chargeWithRefunds } from "./charges.js";
import {
  chargeAlreadyRefunded,
  chargeNotRefundable,
  parameterMissing,
  parametersExclusive,
  paymentIntentNotRefundable,
  refundAmountTooLarge,
  resourceMissing,
} from "./errors.js";
import { newId } from "./ids.js";
import type { PostOperation } from "./operation.js";
import {
  optionalEnum,
  optionalInteger,
  optionalString,
  type Params,
  readExpand,
  readMetadata,
  rejectUnknownParams,
} from "./params.js";
import type { SimStore } from "./state.js";

/** Paths `expand[]` accepts on a refund. */
export const REFUND_EXPANDABLE = ["charge", "payment_intent"] as const;

const CREATE_PARAMS = [
  "payment_intent",
  "charge",
  "amount",
  "reason",
  "metadata",
  "expand",
] as const;

/** The validated input of `POST /v1/refunds`. */
export interface CreateRefundInput {
  /** Exactly one of the two is set. */
  paymentIntentId: string | null;
  chargeId: string | null;
  /** Null refunds whatever remains on the charge. */
  amount: number | null;
  reason: Stripe.Refund.Reason | null;
  metadata: Record<string, string>;
  expand: Set<string>;
}

function validateCreate(params: Params): CreateRefundInput {
  rejectUnknownParams(params, CREATE_PARAMS);
  const paymentIntentId = optionalString(params, "payment_intent");
  const chargeId = optionalString(params, "charge");
  if (paymentIntentId === null && chargeId === null) {
    throw parameterMissing(
      "payment_intent",
      "One of the following params should be provided for this request: payment_intent or charge.",
    );
  }
  if (paymentIntentId !== null && chargeId !== null) {
    throw parametersExclusive(["payment_intent", "charge"]);
  }
  return {
    paymentIntentId,
    chargeId,
    amount: optionalInteger(params, "amount", 1),
    reason: optionalEnum(params, "reason", ["duplicate", "fraudulent", "requested_by_customer"]),
    metadata: readMetadata(params),
    expand: readExpand(params, REFUND_EXPANDABLE),
  };
}

/** The charge a refund request targets, or the Stripe error explaining why there is none. */
function refundableCharge(store: SimStore, input: CreateRefundInput): Stripe.Charge {
  if (input.paymentIntentId !== null) {
    const paymentIntent = store.state.paymentIntents.get(input.paymentIntentId);
    if (paymentIntent === undefined) {
      throw resourceMissing(400, "payment_intent", input.paymentIntentId, "payment_intent");
    }
    const charge =
      typeof paymentIntent.latest_charge === "string"
        ? store.state.charges.get(paymentIntent.latest_charge)
        : undefined;
    if (paymentIntent.status !== "succeeded" || charge?.status !== "succeeded") {
      throw paymentIntentNotRefundable(paymentIntent.id);
    }
    return charge;
  }
  const chargeId = input.chargeId ?? "";
  const charge = store.state.charges.get(chargeId);
  if (charge === undefined) {
    throw resourceMissing(400, "charge", chargeId, "charge");
  }
  if (charge.status !== "succeeded") {
    throw chargeNotRefundable(charge.id);
  }
  return charge;
}

/** The refund as the API returns it, with the requested `expand[]` paths replaced by objects. */
export function renderRefund(store: SimStore, refund: Stripe.Refund, expand: Set<string>): unknown {
  return {
    ...refund,
    ...(expand.has("charge") && typeof refund.charge === "string"
      ? { charge: store.state.charges.get(refund.charge) }
      : {}),
    ...(expand.has("payment_intent") && typeof refund.payment_intent === "string"
      ? { payment_intent: store.state.paymentIntents.get(refund.payment_intent) }
      : {}),
  };
}

/**
 * `POST /v1/refunds`. Refunds `amount` (default: everything that remains) of the charge of a
 * succeeded PaymentIntent, or of a charge. The refunds of a charge never add up to more than
 * its amount: nothing left is `charge_already_refunded`, too much is `amount_too_large`.
 * Refunds succeed at once and emit `charge.refunded`.
 */
export const createRefund: PostOperation<CreateRefundInput> = {
  validate: validateCreate,
  execute(input, context) {
    const { store } = context;
    const charge = refundableCharge(store, input);
    const remaining = charge.amount - charge.amount_refunded;
    if (remaining <= 0) {
      throw chargeAlreadyRefunded(charge.id);
    }
    const amount = input.amount ?? remaining;
    if (amount > remaining) {
      throw refundAmountTooLarge(amount, remaining);
    }
    const refund: Stripe.Refund = {
      id: newId("re"),
      object: "refund",
      amount,
      balance_transaction: newId("txn"),
      charge: charge.id,
      created: context.now,
      currency: charge.currency,
      customer: null,
      customer_account: null,
      metadata: input.metadata,
      payment_intent: charge.payment_intent,
      payment_method: charge.payment_method,
      reason: input.reason,
      receipt_number: null,
      source_transfer_reversal: null,
      status: "succeeded",
      transfer_reversal: null,
    };
    store.state.refunds.set(refund.id, refund);
    const previous = { amount_refunded: charge.amount_refunded, refunded: charge.refunded };
    charge.amount_refunded += amount;
    charge.refunded = charge.amount_refunded === charge.amount;
    context.emit({
      type: "charge.refunded",
      data: {
        object: structuredClone(chargeWithRefunds(store, charge)),
        previous_attributes: previous,
      },
    });
    return renderRefund(store, refund, input.expand);
  },
};

/** `GET /v1/refunds/:id`. */
export function retrieveRefund(store: SimStore, id: string, query: Params): unknown {
  rejectUnknownParams(query, ["expand"]);
  const expand = readExpand(query, REFUND_EXPANDABLE);
  const refund = store.state.refunds.get(id);
  if (refund === undefined) {
    throw resourceMissing(404, "refund", id, "id");
  }
  return renderRefund(store, refund, expand);
}
