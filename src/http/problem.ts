import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { Logger } from "pino";
import { ApiError, type ErrorCode, problemBody } from "./errors.js";

export const PROBLEM_CONTENT_TYPE = "application/problem+json";

/**
 * Writes an ApiError as an `application/problem+json` response. Built from scratch rather than
 * through `c.body`: Hono keeps the headers a handler passed to `c.json` on the context, and a
 * problem must not inherit a success's `Location`.
 */
export function problemResponse(c: Context, error: ApiError): Response {
  const requestId = c.get("requestId") ?? "unknown";
  return new Response(JSON.stringify(problemBody(error, requestId)), {
    status: error.status,
    headers: {
      ...error.headers,
      "Content-Type": PROBLEM_CONTENT_TYPE,
      ...(c.get("requestId") ? { "X-Request-Id": requestId } : {}),
    },
  });
}

/** What Hono's own middleware throws, mapped onto our codes. */
function fromHttpException(error: HTTPException): ApiError {
  const byStatus: Partial<Record<number, ErrorCode>> = {
    400: "malformed_json",
    401: "authentication_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
  };
  return new ApiError(byStatus[error.status] ?? "internal_error");
}

/** The app's one error handler: ApiErrors as they are, Hono's errors mapped, the rest 500. */
export function createErrorHandler(logger: Logger): ErrorHandler {
  return function onError(error, c) {
    // A middleware may fail after its handler answered (the idempotency layer's COMMIT): drop
    // that answer, or Hono would copy its headers (a Location, say) onto the problem.
    c.res = undefined;
    if (error instanceof ApiError) return problemResponse(c, error);
    if (error instanceof HTTPException) return problemResponse(c, fromHttpException(error));
    logger.error({ err: error, request_id: c.get("requestId") }, "unhandled error");
    return problemResponse(c, new ApiError("internal_error"));
  };
}

export const notFound: NotFoundHandler = function notFound(c) {
  return problemResponse(c, new ApiError("route_not_found"));
};
