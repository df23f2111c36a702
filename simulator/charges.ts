import type Stripe from "stripe";
import { resourceMissing } from "./errors.js";
import { newId } from "./ids.js";
import type { OperationContext } from "./operation.js";
import { type Params, readExpand, rejectUnknownParams } from "./params.js";
import type { SimStore } from "./state.js";
import type { TestCard } from "./test-cards.js";

/** Paths `expand[]` accepts on a charge. */
export const CHARGE_EXPANDABLE = ["payment_intent", "refunds"] as const;

/** What a charge copies from the PaymentIntent it belongs to. */
export type ChargeSource = Pick<
  Stripe.PaymentIntent,
  | "id"
  | "amount"
  | "currency"
  | "description"
  | "metadata"
  | "receipt_email"
  | "statement_descriptor_suffix"
  | "transfer_group"
>;

function cardDetails(card: TestCard, amount: number): Stripe.Charge.PaymentMethodDetails {
  return {
    type: "card",
    card: {
      amount_authorized: card.decline === undefined ? amount : null,
      authorization_code: card.decline === undefined ? "123456" : null,
      brand: card.brand,
      checks: { address_line1_check: null, address_postal_code_check: null, cvc_check: "pass" },
      country: card.country,
      electronic_commerce_indicator: null,
      exp_month: 12,
      exp_year: new Date().getUTCFullYear() + 3,
      funding: card.funding,
      installments: null,
      last4: card.last4,
      mandate: null,
      network: card.brand,
      network_transaction_id: null,
      regulated_status: "unregulated",
      three_d_secure: null,
      transaction_link_id: null,
      wallet: null,
    },
  };
}

function outcome(card: TestCard): Stripe.Charge.Outcome {
  const common = { advice_code: null, network_advice_code: null, network_decline_code: null };
  if (card.decline === undefined) {
    return {
      ...common,
      network_status: "approved_by_network",
      reason: null,
      risk_level: "normal",
      seller_message: "Payment complete.",
      type: "authorized",
    };
  }
  return {
    ...common,
    network_status: "declined_by_network",
    reason: card.decline.declineCode,
    risk_level: "normal",
    seller_message: "The bank did not return any further details with this decline.",
    type: "issuer_declined",
  };
}

/**
 * Charges `card` for the PaymentIntent and stores the charge: `succeeded` and captured, or
 * `failed` with the card's decline code.
 */
export function createCharge(
  context: OperationContext,
  paymentIntent: ChargeSource,
  paymentMethodId: string,
  card: TestCard,
): Stripe.Charge {
  const succeeded = card.decline === undefined;
  const charge: Stripe.Charge = {
    id: newId("ch"),
    object: "charge",
    amount: paymentIntent.amount,
    amount_captured: succeeded ? paymentIntent.amount : 0,
    amount_refunded: 0,
    application: null,
    application_fee: null,
    application_fee_amount: null,
    balance_transaction: succeeded ? newId("txn") : null,
    billing_details: {
      address: {
        city: null,
        country: null,
        line1: null,
        line2: null,
        postal_code: null,
        state: null,
      },
      email: null,
      name: null,
      phone: null,
      tax_id: null,
    },
    calculated_statement_descriptor: "STRIPE SIMULATOR",
    captured: succeeded,
    created: context.now,
    currency: paymentIntent.currency,
    customer: null,
    description: paymentIntent.description,
    disputed: false,
    failure_balance_transaction: null,
    failure_code: card.decline?.code ?? null,
    failure_message: card.decline?.message ?? null,
    fraud_details: {},
    livemode: false,
    metadata: { ...paymentIntent.metadata },
    on_behalf_of: null,
    outcome: outcome(card),
    paid: succeeded,
    payment_intent: paymentIntent.id,
    payment_method: paymentMethodId,
    payment_method_details: cardDetails(card, paymentIntent.amount),
    receipt_email: paymentIntent.receipt_email,
    receipt_number: null,
    receipt_url: null,
    refunded: false,
    review: null,
    shipping: null,
    source: null,
    source_transfer: null,
    statement_descriptor: null,
    statement_descriptor_suffix: paymentIntent.statement_descriptor_suffix,
    status: succeeded ? "succeeded" : "failed",
    transfer_data: null,
    transfer_group: paymentIntent.transfer_group,
  };
  context.store.state.charges.set(charge.id, charge);
  return charge;
}

/** The charge with its `refunds` list filled in, as `charge.refunded` events carry it. */
export function chargeWithRefunds(store: SimStore, charge: Stripe.Charge): Stripe.Charge {
  const refunds = [...store.state.refunds.values()]
    .filter((refund) => refund.charge === charge.id)
    .reverse();
  return {
    ...charge,
    refunds: {
      object: "list",
      data: refunds,
      has_more: false,
      url: `/v1/charges/${charge.id}/refunds`,
    },
  };
}

/** The charge as the API returns it, with the requested `expand[]` paths replaced by objects. */
export function renderCharge(store: SimStore, charge: Stripe.Charge, expand: Set<string>): unknown {
  const rendered = expand.has("refunds") ? chargeWithRefunds(store, charge) : charge;
  if (expand.has("payment_intent") && typeof charge.payment_intent === "string") {
    return { ...rendered, payment_intent: store.state.paymentIntents.get(charge.payment_intent) };
  }
  return rendered;
}

/** `GET /v1/charges/:id`. */
export function retrieveCharge(store: SimStore, id: string, query: Params): unknown {
  rejectUnknownParams(query, ["expand"]);
  const expand = readExpand(query, CHARGE_EXPANDABLE);
  const charge = store.state.charges.get(id);
  if (charge === undefined) {
    throw resourceMissing(404, "charge", id, "id");
  }
  return renderCharge(store, charge, expand);
}
