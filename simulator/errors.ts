import type Stripe from "stripe";

/**
 * The v1 error `type`s the simulator produces. stripe-node picks its error class from the HTTP
 * status first (400/404 → StripeInvalidRequestError, or StripeIdempotencyError when the type is
 * `idempotency_error`; 401 → StripeAuthenticationError; 402 → StripeCardError; 5xx →
 * StripeAPIError), so the status and the type must agree.
 */
export type StripeErrorType =
  | "api_error"
  | "card_error"
  | "idempotency_error"
  | "invalid_request_error";

/** The object Stripe nests under `error` in every failed response. */
export interface StripeErrorBody {
  type: StripeErrorType;
  message: string;
  code?: string;
  decline_code?: string;
  param?: string;
  doc_url?: string;
  charge?: string;
  payment_intent?: Stripe.PaymentIntent;
}

/** A Stripe API error: the HTTP status plus the body the simulator answers with. */
export class StripeSimError extends Error {
  readonly status: number;
  readonly body: StripeErrorBody;

  constructor(status: number, body: StripeErrorBody) {
    super(body.message);
    this.name = "StripeSimError";
    this.status = status;
    this.body = body;
  }
}

/** The documentation page Stripe links from an error with this `code`. */
export function docUrl(code: string): string {
  return `https://docs.stripe.com/error-codes/${code.replaceAll("_", "-")}`;
}

function invalidRequest(
  status: 400 | 404,
  message: string,
  details: { code?: string; param?: string } = {},
): StripeSimError {
  const { code, param } = details;
  return new StripeSimError(status, {
    type: "invalid_request_error",
    message,
    ...(code === undefined ? {} : { code, doc_url: docUrl(code) }),
    ...(param === undefined ? {} : { param }),
  });
}

/** 401 for a request without a usable `Authorization` header. */
export function missingApiKey(): StripeSimError {
  return new StripeSimError(401, {
    type: "invalid_request_error",
    message:
      "You did not provide an API key. You need to provide your API key in the Authorization " +
      "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
  });
}

/** 401 for a key that is not a test-mode secret key (`sk_test_...`). */
export function invalidApiKey(key: string): StripeSimError {
  const redacted = key.length > 12 ? `${key.slice(0, 8)}****${key.slice(-4)}` : "****";
  return new StripeSimError(401, {
    type: "invalid_request_error",
    message:
      `Invalid API Key provided: ${redacted}. ` +
      "The Stripe simulator only accepts keys starting with sk_test_.",
  });
}

/** 404 for a path the simulator does not implement, worded like Stripe's. */
export function unrecognizedUrl(method: string, path: string): StripeSimError {
  return invalidRequest(
    404,
    `Unrecognized request URL (${method}: ${path}). The Stripe simulator implements only the ` +
      "endpoints listed in simulator/README.md.",
  );
}

/** 400 `parameter_missing`. */
export function parameterMissing(param: string, message = `Missing required param: ${param}.`) {
  return invalidRequest(400, message, { code: "parameter_missing", param });
}

/** 400 for `confirm=true` without a `payment_method`. */
export function confirmWithoutPaymentMethod(): StripeSimError {
  return parameterMissing(
    "payment_method",
    "You cannot confirm this PaymentIntent because it's missing a payment method. Confirm it " +
      "again with a payment_method such as pm_card_visa.",
  );
}

/** 400 `parameter_unknown`, for any parameter the simulated endpoint does not accept. */
export function parameterUnknown(param: string): StripeSimError {
  return invalidRequest(400, `Received unknown parameter: ${param}`, {
    code: "parameter_unknown",
    param,
  });
}

/** 400 `parameter_invalid_empty`, for an empty string sent for a parameter that cannot be unset. */
export function parameterInvalidEmpty(param: string): StripeSimError {
  return invalidRequest(
    400,
    `You passed an empty string for '${param}'. We assume empty values are an attempt to unset a ` +
      `parameter; however '${param}' cannot be unset. You should remove '${param}' from your ` +
      "request or supply a non-empty value.",
    { code: "parameter_invalid_empty", param },
  );
}

/** 400 `parameter_invalid_integer`, for a value that is not an integer or is below `min`. */
export function parameterInvalidInteger(param: string, raw: string, min?: number): StripeSimError {
  const message =
    min === undefined
      ? `Invalid integer: ${raw}`
      : `This value must be greater than or equal to ${min}.`;
  return invalidRequest(400, message, { code: "parameter_invalid_integer", param });
}

/** 400 for a value of the wrong shape (object where a string was expected, bad enum value...). */
export function parameterInvalid(param: string, message: string): StripeSimError {
  return invalidRequest(400, message, { param });
}

/** 400 `parameters_exclusive`. */
export function parametersExclusive(params: readonly string[]): StripeSimError {
  return invalidRequest(
    400,
    `You may only specify one of these parameters: ${params.join(", ")}.`,
    { code: "parameters_exclusive", param: params[0] },
  );
}

/** 400 for a currency that is not three ASCII letters. Stripe sends no `code` for this one. */
export function invalidCurrency(raw: string): StripeSimError {
  return invalidRequest(
    400,
    `Invalid currency: ${raw}. The Stripe simulator accepts any three-letter ISO currency code.`,
    { param: "currency" },
  );
}

/** 400 `amount_too_large`, for an amount above Stripe's eight-digit limit. */
export function amountAboveMaximum(max: number): StripeSimError {
  return invalidRequest(400, `Amount must be no more than ${max}.`, {
    code: "amount_too_large",
    param: "amount",
  });
}

/**
 * `resource_missing`: 404 when the object named in the URL is unknown, 400 when a parameter
 * names an unknown object (both as Stripe does).
 */
export function resourceMissing(
  status: 400 | 404,
  resource: string,
  id: string,
  param: string,
): StripeSimError {
  return invalidRequest(status, `No such ${resource}: '${id}'`, {
    code: "resource_missing",
    param,
  });
}

/** 400 for `expand[]` paths the object cannot expand. */
export function notExpandable(path: string, param: string): StripeSimError {
  return invalidRequest(400, `This property cannot be expanded (${path}).`, { param });
}

/** 400 `payment_intent_unexpected_state`, e.g. refunding a PaymentIntent that never succeeded. */
export function paymentIntentNotRefundable(paymentIntentId: string): StripeSimError {
  return invalidRequest(
    400,
    `This PaymentIntent (${paymentIntentId}) does not have a successful charge to refund.`,
    { code: "payment_intent_unexpected_state", param: "payment_intent" },
  );
}

/** 400 `charge_not_refundable`, for a charge that failed. */
export function chargeNotRefundable(chargeId: string): StripeSimError {
  return invalidRequest(400, `Charge ${chargeId} cannot be refunded because it failed.`, {
    code: "charge_not_refundable",
    param: "charge",
  });
}

/** 400 `charge_already_refunded`, when nothing of the charge is left to refund. */
export function chargeAlreadyRefunded(chargeId: string): StripeSimError {
  return invalidRequest(400, `Charge ${chargeId} has already been refunded.`, {
    code: "charge_already_refunded",
  });
}

/** 400 `amount_too_large`, when a refund asks for more than what remains on the charge. */
export function refundAmountTooLarge(requested: number, remaining: number): StripeSimError {
  return invalidRequest(
    400,
    `Refund amount (${requested}) is greater than unrefunded amount on charge (${remaining}).`,
    { code: "amount_too_large", param: "amount" },
  );
}

/** 400 for a `capture_method` the simulator does not model. */
export function unsupportedCaptureMethod(value: string): StripeSimError {
  return invalidRequest(
    400,
    `capture_method=${value} is not supported by the Stripe simulator; ` +
      "use automatic or automatic_async.",
    { param: "capture_method" },
  );
}

/** 400 `idempotency_error`: the key was first used with other parameters. */
export function idempotencyParamsMismatch(key: string): StripeSimError {
  return new StripeSimError(400, {
    type: "idempotency_error",
    message:
      "Keys for idempotent requests can only be used with the same parameters they were first " +
      `used with. Try using a key other than '${key}' if you meant to execute a different request.`,
  });
}

/** 400 `idempotency_error`: the key was first used on another endpoint. */
export function idempotencyEndpointMismatch(
  key: string,
  requested: string,
  original: string,
): StripeSimError {
  return new StripeSimError(400, {
    type: "idempotency_error",
    message:
      "Keys for idempotent requests can only be used for the same endpoint they were first used " +
      `for ('${requested}' vs '${original}'). Try using a key other than '${key}' if you meant ` +
      "to execute a different request.",
  });
}

/** 400 for an `Idempotency-Key` longer than Stripe's limit. */
export function idempotencyKeyTooLong(max: number): StripeSimError {
  return invalidRequest(400, `Idempotency keys can be at most ${max} characters long.`);
}

/** 500 `api_error`, for injected faults and for bugs in the simulator itself. */
export function apiError(
  message = "An unknown error occurred while processing your request.",
): StripeSimError {
  return new StripeSimError(500, { type: "api_error", message });
}

/** 500 `api_error` answered by an `error_500` fault instead of running the request. */
export function injectedFault(): StripeSimError {
  return apiError(
    "An unknown error occurred while processing your request " +
      "(fault injected by the Stripe simulator).",
  );
}

/** 402 `card_error` for a declined confirmation; `payment_intent` is the declined intent. */
export function cardDeclined(details: {
  code: string;
  declineCode: string;
  message: string;
  chargeId: string;
  paymentIntent: Stripe.PaymentIntent;
}): StripeSimError {
  return new StripeSimError(402, {
    type: "card_error",
    code: details.code,
    decline_code: details.declineCode,
    message: details.message,
    charge: details.chargeId,
    doc_url: docUrl(details.code),
    payment_intent: details.paymentIntent,
  });
}

/** The exact JSON text Stripe-style error responses carry: `{ "error": { ... } }`. */
export function errorResponseText(error: StripeSimError): string {
  return JSON.stringify({ error: error.body }, null, 2);
}
