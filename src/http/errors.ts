import type { ContentfulStatusCode } from "hono/utils/http-status";

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
  idempotency_key_missing: {
    status: 400,
    title: "Idempotency-Key missing",
    detail: "This request changes state and must carry an `Idempotency-Key` header.",
  },
  idempotency_key_invalid: {
    status: 400,
    title: "Idempotency-Key invalid",
    detail:
      "The `Idempotency-Key` header must be a single value of 16-255 characters from " +
      "`A-Z a-z 0-9 - _ . : ~ + / =`, bare or as a quoted Structured Field string.",
  },
  idempotency_key_reused: {
    status: 422,
    title: "Idempotency-Key reused",
    detail:
      "This Idempotency-Key was already used for a request with a different method, path or " +
      "body. Use a new key for a new request.",
  },
  idempotency_key_in_progress: {
    status: 409,
    title: "Request in progress",
    detail:
      "A request with this Idempotency-Key is still being processed. Retry after the " +
      "number of seconds in `Retry-After` to receive its outcome.",
  },
  malformed_json: {
    status: 400,
    title: "Malformed JSON",
    detail: "The request body is not valid JSON.",
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
  route_not_found: {
    status: 404,
    title: "Not found",
    detail: "No such route.",
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
  internal_error: {
    status: 500,
    title: "Internal error",
    detail: "The server failed to process the request. Nothing was saved; retry it.",
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

/** The problem+json body (RFC 9457) of every error response. */
export interface Problem {
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

  constructor(
    code: ErrorCode,
    options: { detail?: string; errors?: FieldError[]; headers?: Record<string, string> } = {},
  ) {
    super(options.detail ?? ERRORS[code].detail);
    this.code = code;
    this.status = ERRORS[code].status;
    this.errors = options.errors;
    this.headers = options.headers;
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
    ...(error.errors ? { errors: error.errors } : {}),
  };
}
