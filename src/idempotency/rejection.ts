import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";

/**
 * Every answer the layer gives on its own, one code per cause, with its status, title and
 * default detail text. A host that renders problems itself can take the texts from here.
 */
export const IDEMPOTENCY_PROBLEMS = {
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
} as const;

export type IdempotencyRejectionCode = keyof typeof IDEMPOTENCY_PROBLEMS;

/** Why a request was rejected before (or instead of) reaching its handler. */
export class IdempotencyRejection extends Error {
  override name = "IdempotencyRejection";
  readonly status: (typeof IDEMPOTENCY_PROBLEMS)[IdempotencyRejectionCode]["status"];
  readonly title: string;

  constructor(
    readonly code: IdempotencyRejectionCode,
    readonly options: {
      /** Response headers the answer must carry (`Retry-After` on a 409). */
      headers?: Record<string, string>;
      /** Field errors of a body that could not be fingerprinted. */
      errors?: { path: string; message: string }[];
    } = {},
  ) {
    super(IDEMPOTENCY_PROBLEMS[code].detail);
    this.status = IDEMPOTENCY_PROBLEMS[code].status;
    this.title = IDEMPOTENCY_PROBLEMS[code].title;
  }
}

/**
 * How the layer answers a rejection. It may return the response, or throw the host's own error
 * so that the host's `onError` renders it like any other.
 */
export type RejectionHandler = (
  c: Context,
  rejection: IdempotencyRejection,
) => Response | Promise<Response>;

/** The tag URI of a problem type, as in `tag:idempotent-payments.dev,2026:problems/<code>`. */
export const PROBLEM_TYPE_BASE = "tag:idempotent-payments.dev,2026:problems/";

/**
 * The default answer: throws an `HTTPException` carrying an RFC 9457 `application/problem+json`
 * response (`code` and `errors` members, the rejection's headers, and `request_id` when Hono's
 * `requestId` middleware runs), as Hono's own middleware do. Hono's default error handler sends
 * that response; an `onError` of the host's gets it from `error.getResponse()`.
 */
export const problemJson: RejectionHandler = function problemJson(c, rejection) {
  const requestId: string | undefined = c.get("requestId");
  const body = {
    type: `${PROBLEM_TYPE_BASE}${rejection.code}`,
    title: rejection.title,
    status: rejection.status,
    detail: rejection.message,
    code: rejection.code,
    ...(requestId ? { request_id: requestId } : {}),
    ...(rejection.options.errors ? { errors: rejection.options.errors } : {}),
  };
  const res = new Response(JSON.stringify(body), {
    status: rejection.status,
    headers: { ...rejection.options.headers, "Content-Type": "application/problem+json" },
  });
  throw new HTTPException(rejection.status, { res, cause: rejection });
};
