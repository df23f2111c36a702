import type Stripe from "stripe";
import { createCharge } from "./charges.js";
import {
  cardDeclined,
  confirmWithoutPaymentMethod,
  docUrl,
  invalidCurrency,
  parameterInvalid,
  parameterMissing,
  resourceMissing,
  unsupportedCaptureMethod,
} from "./errors.js";
import { newId, randomToken } from "./ids.js";
import type { OperationContext, PostOperation } from "./operation.js";
import {
  optionalAmount,
  optionalBoolean,
  optionalEnum,
  optionalString,
  optionalStringArray,
  type Params,
  readExpand,
  readMetadata,
  rejectUnknownParams,
  requiredString,
} from "./params.js";
import type { SimStore } from "./state.js";
import { TEST_CARDS } from "./test-cards.js";

/** Paths `expand[]` accepts on a PaymentIntent. */
export const PAYMENT_INTENT_EXPANDABLE = ["latest_charge"] as const;

/**
 * The create parameters the simulator accepts. Anything else is `parameter_unknown`, as in
 * Stripe, so a typo in the app fails here instead of being silently ignored. `off_session`,
 * `error_on_requires_action` and `return_url` only matter for cards that need
 * authentication, which the simulator does not model; they are accepted and validated.
 */
const CREATE_PARAMS = [
  "amount",
  "currency",
  "payment_method",
  "payment_method_types",
  "automatic_payment_methods",
  "confirm",
  "capture_method",
  "description",
  "metadata",
  "receipt_email",
  "statement_descriptor_suffix",
  "transfer_group",
  "off_session",
  "error_on_requires_action",
  "return_url",
  "expand",
] as const;

/** The validated input of `POST /v1/payment_intents`. */
export interface CreatePaymentIntentInput {
  amount: number;
  currency: string;
  paymentMethod: string | null;
  paymentMethodTypes: string[];
  automaticPaymentMethods: Stripe.PaymentIntent.AutomaticPaymentMethods | null;
  confirm: boolean;
  captureMethod: Stripe.PaymentIntent.CaptureMethod;
  description: string | null;
  metadata: Record<string, string>;
  receiptEmail: string | null;
  statementDescriptorSuffix: string | null;
  transferGroup: string | null;
  expand: Set<string>;
}

function readCurrency(params: Params): string {
  const raw = requiredString(params, "currency");
  const currency = raw.toLowerCase();
  if (!/^[a-z]{3}$/.test(currency)) {
    throw invalidCurrency(raw);
  }
  return currency;
}

function readAutomaticPaymentMethods(
  params: Params,
): Stripe.PaymentIntent.AutomaticPaymentMethods | null {
  const value = params.automatic_payment_methods;
  if (value === undefined || value === "") {
    return null;
  }
  if (typeof value !== "object" || Array.isArray(value)) {
    throw parameterInvalid(
      "automatic_payment_methods",
      "Invalid automatic_payment_methods: must be an object.",
    );
  }
  rejectUnknownParams(value, ["enabled", "allow_redirects"]);
  const enabled = optionalBoolean(value, "enabled");
  if (enabled === null) {
    throw parameterMissing("automatic_payment_methods[enabled]");
  }
  const allowRedirects = optionalEnum(value, "allow_redirects", ["always", "never"]);
  return { enabled, ...(allowRedirects === null ? {} : { allow_redirects: allowRedirects }) };
}

function validateCreate(params: Params): CreatePaymentIntentInput {
  rejectUnknownParams(params, CREATE_PARAMS);
  const amount = optionalAmount(params, "amount");
  if (amount === null) {
    throw parameterMissing("amount");
  }
  const currency = readCurrency(params);
  const paymentMethod = optionalString(params, "payment_method");
  const confirm = optionalBoolean(params, "confirm") ?? false;
  if (confirm && paymentMethod === null) {
    throw confirmWithoutPaymentMethod();
  }
  // Stripe's default since API version 2024-04-10; manual capture would need /capture.
  const captureMethod =
    optionalEnum(params, "capture_method", ["automatic", "automatic_async", "manual"]) ??
    "automatic_async";
  if (captureMethod === "manual") {
    throw unsupportedCaptureMethod(captureMethod);
  }
  optionalBoolean(params, "off_session");
  optionalBoolean(params, "error_on_requires_action");
  optionalString(params, "return_url");
  return {
    amount,
    currency,
    paymentMethod,
    paymentMethodTypes: optionalStringArray(params, "payment_method_types") ?? ["card"],
    automaticPaymentMethods: readAutomaticPaymentMethods(params),
    confirm,
    captureMethod,
    description: optionalString(params, "description"),
    metadata: readMetadata(params),
    receiptEmail: optionalString(params, "receipt_email"),
    statementDescriptorSuffix: optionalString(params, "statement_descriptor_suffix"),
    transferGroup: optionalString(params, "transfer_group"),
    expand: readExpand(params, PAYMENT_INTENT_EXPANDABLE),
  };
}

function newPaymentIntent(
  input: CreatePaymentIntentInput,
  context: OperationContext,
): Stripe.PaymentIntent {
  const id = newId("pi");
  return {
    id,
    object: "payment_intent",
    allowed_payment_method_types: null,
    amount: input.amount,
    amount_capturable: 0,
    amount_received: 0,
    application: null,
    application_fee_amount: null,
    automatic_payment_methods: input.automaticPaymentMethods,
    canceled_at: null,
    cancellation_reason: null,
    capture_method: input.captureMethod,
    client_secret: `${id}_secret_${randomToken(25)}`,
    confirmation_method: "automatic",
    created: context.now,
    currency: input.currency,
    customer: null,
    customer_account: null,
    description: input.description,
    excluded_payment_method_types: null,
    last_payment_error: null,
    latest_charge: null,
    livemode: false,
    managed_payments: null,
    metadata: input.metadata,
    next_action: null,
    on_behalf_of: null,
    payment_method: input.paymentMethod,
    payment_method_configuration_details: null,
    payment_method_options: {
      card: {
        installments: null,
        mandate_options: null,
        network: null,
        request_three_d_secure: "automatic",
      },
    },
    payment_method_types: input.paymentMethodTypes,
    payment_record: null,
    processing: null,
    receipt_email: input.receiptEmail,
    review: null,
    setup_future_usage: null,
    shipping: null,
    source: null,
    statement_descriptor: null,
    statement_descriptor_suffix: input.statementDescriptorSuffix,
    status: input.paymentMethod === null ? "requires_payment_method" : "requires_confirmation",
    transfer_group: input.transferGroup,
  };
}

/** The PaymentIntent as the API returns it, with `latest_charge` expanded on request. */
export function renderPaymentIntent(
  store: SimStore,
  paymentIntent: Stripe.PaymentIntent,
  expand: Set<string>,
): Stripe.PaymentIntent {
  if (expand.has("latest_charge") && typeof paymentIntent.latest_charge === "string") {
    const charge = store.state.charges.get(paymentIntent.latest_charge);
    return { ...paymentIntent, latest_charge: charge ?? paymentIntent.latest_charge };
  }
  return paymentIntent;
}

/**
 * `POST /v1/payment_intents`. With `confirm=true` the card is charged at once: a test card
 * that succeeds leaves the intent `succeeded` with a captured charge; a declining one leaves
 * it `requires_payment_method` with `last_payment_error` and answers 402 `card_error` whose
 * `payment_intent` is the stored intent. Either way the intent exists afterwards.
 */
export const createPaymentIntent: PostOperation<CreatePaymentIntentInput> = {
  validate: validateCreate,
  execute(input, context) {
    const { store } = context;
    const card =
      input.confirm && input.paymentMethod !== null
        ? TEST_CARDS.get(input.paymentMethod)
        : undefined;
    if (input.confirm && card === undefined) {
      throw resourceMissing(400, "PaymentMethod", input.paymentMethod ?? "", "payment_method");
    }
    const paymentIntent = newPaymentIntent(input, context);
    store.state.paymentIntents.set(paymentIntent.id, paymentIntent);
    if (card === undefined || input.paymentMethod === null) {
      return renderPaymentIntent(store, paymentIntent, input.expand);
    }
    const charge = createCharge(context, paymentIntent, input.paymentMethod, card);
    paymentIntent.latest_charge = charge.id;
    if (card.decline === undefined) {
      paymentIntent.status = "succeeded";
      paymentIntent.amount_received = charge.amount_captured;
      context.emit({
        type: "payment_intent.succeeded",
        data: { object: structuredClone(paymentIntent) },
      });
      return renderPaymentIntent(store, paymentIntent, input.expand);
    }
    // A declined confirmation detaches the payment method, as Stripe does.
    paymentIntent.status = "requires_payment_method";
    paymentIntent.payment_method = null;
    paymentIntent.last_payment_error = {
      type: "card_error",
      charge: charge.id,
      code: card.decline.code,
      decline_code: card.decline.declineCode,
      doc_url: docUrl(card.decline.code),
      message: card.decline.message,
      payment_method_type: "card",
    };
    context.emit({
      type: "payment_intent.payment_failed",
      data: { object: structuredClone(paymentIntent) },
    });
    throw cardDeclined({
      code: card.decline.code,
      declineCode: card.decline.declineCode,
      message: card.decline.message,
      chargeId: charge.id,
      paymentIntent,
    });
  },
};

/** `GET /v1/payment_intents/:id`. */
export function retrievePaymentIntent(store: SimStore, id: string, query: Params): unknown {
  rejectUnknownParams(query, ["expand", "client_secret"]);
  const expand = readExpand(query, PAYMENT_INTENT_EXPANDABLE);
  const paymentIntent = store.state.paymentIntents.get(id);
  if (paymentIntent === undefined) {
    throw resourceMissing(404, "payment_intent", id, "intent");
  }
  return renderPaymentIntent(store, paymentIntent, expand);
}
