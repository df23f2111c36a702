import type { ContentfulStatusCode } from "hono/utils/http-status";
import { IDEMPOTENCY_PROBLEMS } from "../idempotency/index.js";

/**
 * Every error this API can answer, one code per cause. The map gives each code its HTTP status,
 * its title and the default detail text, so tests and the OpenAPI document read them from here.
 */
export const ERRORS = {
  authentication_required: {
    status: 401,
    title: "Authentication required",
    detail: "Send an API key as `Authorization: Bearer <key>`.",
  },
  api_key_invalid: {
    status: 401,
    title: "Invalid API key",
    detail: "The API key is not recognised.",
  },
  // The idempotency layer's own answers, in its words.
  idempotency_key_missing: IDEMPOTENCY_PROBLEMS.idempotency_key_missing,
  idempotency_key_invalid: IDEMPOTENCY_PROBLEMS.idempotency_key_invalid,
  idempotency_key_reused: IDEMPOTENCY_PROBLEMS.idempotency_key_reused,
  idempotency_key_in_progress: IDEMPOTENCY_PROBLEMS.idempotency_key_in_progress,
  malformed_json: {
    status: 400,
    title: "Malformed JSON",
    detail: "The request body is not valid JSON.",
  },
  json_too_deep: {
    status: 400,
    title: "JSON nested too deeply",
    detail: "The request body nests arrays and objects more than 32 levels deep.",
  },
  invalid_utf8: {
    status: 400,
    title: "Invalid UTF-8",
    detail: "The request body is not valid UTF-8.",
  },
  value_not_storable: {
    status: 400,
    title: "Value not storable",
    detail:
      "A value of the request cannot be stored (out of range, too long or not valid text). " +
      "Nothing was saved; check the request against the schema.",
  },
  validation_failed: {
    status: 400,
    title: "Validation failed",
    detail: "The request does not match the schema; see `errors`.",
  },
  payload_too_large: {
    status: 413,
    title: "Payload too large",
    detail: "The request body exceeds 1 MB.",
  },
  unsupported_media_type: {
    status: 415,
    title: "Unsupported media type",
    detail: "Send the request body as `application/json`.",
  },
  content_encoding_unsupported: {
    status: 415,
    title: "Unsupported content encoding",
    detail: "Send the request body uncompressed: no `Content-Encoding`, or `identity`.",
  },
  route_not_found: {
    status: 404,
    title: "Not found",
    detail: "No such route.",
  },
  method_not_allowed: {
    status: 405,
    title: "Method not allowed",
    detail: "This path does not serve this method; `Allow` lists the ones it serves.",
  },
  malformed_request: {
    status: 400,
    title: "Malformed request",
    detail: "The request is not valid HTTP/1.1 (its framing or its `Host` header).",
  },
  request_timeout: {
    status: 408,
    title: "Request timeout",
    detail: "The request was not received in time. Nothing was saved; send it again.",
  },
  request_header_fields_too_large: {
    status: 431,
    title: "Request header fields too large",
    detail: "The request's headers exceed 16 KB.",
  },
  order_not_found: {
    status: 404,
    title: "Order not found",
    detail: "No order with this id exists for this account.",
  },
  order_not_cancellable: {
    status: 409,
    title: "Order not cancellable",
    detail: "Only a pending order can be cancelled.",
  },
  order_not_payable: {
    status: 409,
    title: "Order not payable",
    detail: "Only a pending order with no payment in progress can be paid.",
  },
  payment_not_found: {
    status: 404,
    title: "Payment not found",
    detail: "No payment with this id exists for this account.",
  },
  payment_declined: {
    status: 402,
    title: "Payment declined",
    detail: "The card was declined; `decline_code` says why. The order stays payable.",
  },
  payment_method_invalid: {
    status: 402,
    title: "Payment method invalid",
    detail: "The payment provider does not accept this payment method. The order stays payable.",
  },
  payment_request_invalid: {
    status: 422,
    title: "Payment request invalid",
    detail:
      "The payment provider refused a parameter of the payment (`provider_code` names it, such " +
      "as `amount_too_large`); nothing was charged. The order stays payable.",
  },
  payment_not_refundable: {
    status: 409,
    title: "Payment not refundable",
    detail: "Only a succeeded payment can be refunded.",
  },
  refund_not_found: {
    status: 404,
    title: "Refund not found",
    detail: "No refund with this id exists for this account.",
  },
  refund_exceeds_payment: {
    status: 409,
    title: "Refund exceeds payment",
    detail: "The refunds of a payment can never add up to more than it captured.",
  },
  refund_failed: {
    status: 409,
    title: "Refund failed",
    detail: "The payment provider refused the refund; `decline_code` carries its reason.",
  },
  webhook_signature_invalid: {
    status: 400,
    title: "Invalid webhook signature",
    detail: "The `Stripe-Signature` header does not match the payload and the signing secret.",
  },
  provider_unavailable: {
    status: 503,
    title: "Payment provider unavailable",
    detail:
      "The payment provider did not answer in time, so the outcome is not known yet. Retry " +
      "with the same Idempotency-Key after `Retry-After` seconds to get it; nothing is charged twice.",
  },
  internal_error: {
    status: 500,
    title: "Internal error",
    detail: "The server failed to process the request. Nothing was saved; retry it.",
  },
  database_unavailable: {
    status: 503,
    title: "Database unavailable",
    detail:
      "The database could not be reached, so nothing was saved. Retry with the same " +
      "Idempotency-Key after `Retry-After` seconds.",
  },
  service_unavailable: {
    status: 503,
    title: "Service unavailable",
    detail: "A dependency is unavailable. Nothing was saved; retry it.",
  },
} as const satisfies Record<
  string,
  { status: ContentfulStatusCode; title: string; detail: string }
>;

export type ErrorCode = keyof typeof ERRORS;
export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];

export interface FieldError {
  path: string;
  message: string;
}

/** Extension members some problems carry (RFC 9457 section 3.2), such as a declined payment's id. */
export interface ProblemExtensions {
  payment_id?: string;
  decline_code?: string;
  provider_code?: string;
}

/** The problem+json body (RFC 9457) of every error response. */
export interface Problem extends ProblemExtensions {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  request_id: string;
  errors?: FieldError[];
}

export const PROBLEM_TYPE_BASE = "tag:idempotent-payments.dev,2026:problems/";

/**
 * The one error type handlers and middleware throw for an answer they mean to give; `onError`
 * turns it into problem+json. Anything else thrown is a 500.
 */
export class ApiError extends Error {
  override name = "ApiError";
  readonly code: ErrorCode;
  readonly status: ContentfulStatusCode;
  readonly errors?: FieldError[];
  readonly headers?: Record<string, string>;
  readonly extensions?: ProblemExtensions;

  constructor(
    code: ErrorCode,
    options: {
      detail?: string;
      errors?: FieldError[];
      headers?: Record<string, string>;
      extensions?: ProblemExtensions;
    } = {},
  ) {
    super(options.detail ?? ERRORS[code].detail);
    this.code = code;
    this.status = ERRORS[code].status;
    this.errors = options.errors;
    this.headers = options.headers;
    this.extensions = options.extensions;
  }
}

export function problemBody(error: ApiError, requestId: string): Problem {
  return {
    type: `${PROBLEM_TYPE_BASE}${error.code}`,
    title: ERRORS[error.code].title,
    status: error.status,
    detail: error.message,
    code: error.code,
    request_id: requestId,
    ...error.extensions,
    ...(error.errors ? { errors: error.errors } : {}),
  };
}
