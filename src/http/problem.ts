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

/** How long a client is asked to wait while the database is away: a restart takes seconds. */
const DATABASE_RETRY_AFTER_SECONDS = 2;

/**
 * postgres.js's own codes for a connection that is gone or could not be made, and the
 * SQLSTATEs PostgreSQL sends when it is shutting down, starting, or out of connections.
 */
const UNAVAILABLE_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_DESTROYED",
  "CONNECTION_ENDED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
]);

/**
 * The code that says the database was away when `error` (or an error it wraps, as drizzle's
 * DrizzleQueryError wraps the driver's) happened, or undefined for any other fault.
 */
export function databaseUnavailable(error: unknown): string | undefined {
  for (let e = error, depth = 0; e && typeof e === "object" && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (UNAVAILABLE_CODES.has(code) || code.startsWith("08"))) {
      return code;
    }
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * The SQLSTATE when `error` (or an error it wraps) is PostgreSQL refusing a value: class 22,
 * "data exception" (22P02 invalid text representation, 22003 numeric value out of range,
 * 22021 character not in repertoire, 22001 string too long, 22007 invalid datetime...). Such a
 * value came from the request, since the server writes nothing else the schema does not check:
 * the client's mistake, answered 400, where every other database fault stays a 500.
 */
export function valueRejected(error: unknown): string | undefined {
  for (let e = error, depth = 0; e && typeof e === "object" && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^22[0-9A-Z]{3}$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * The status a request that the client abandoned is counted under (nginx's "client closed
 * request"): no one reads the answer, and it is no server fault.
 */
export const CLIENT_CLOSED_STATUS = 499;

/**
 * Set by the server (`serveApp`) on a Node request it answered itself while the app was
 * reading its body (a 408 for a body that did not arrive in time, a 400 for broken chunked
 * framing): the status it answered.
 */
export const REFUSED_BY_SERVER = Symbol("refused by the server");

/** The app's one error handler: ApiErrors as they are, Hono's errors mapped, the rest 500. */
export function createErrorHandler(logger: Logger): ErrorHandler {
  return function onError(error, c) {
    // A middleware may fail after its handler answered (the idempotency layer's COMMIT): drop
    // that answer, or Hono would copy its headers (a Location, say) onto the problem.
    c.res = undefined;
    if (error instanceof ApiError) return problemResponse(c, error);
    if (error instanceof HTTPException) return problemResponse(c, fromHttpException(error));
    const incoming = (c.env as { incoming?: Record<symbol, unknown> } | undefined)?.incoming;
    const refused = incoming?.[REFUSED_BY_SERVER];
    if (typeof refused === "number") {
      logger.info({ request_id: c.get("requestId"), status: refused }, "request refused mid-body");
      return new Response(null, { status: refused });
    }
    if (c.req.raw.signal.aborted || isClientAbort(error)) {
      logger.info({ request_id: c.get("requestId") }, "client closed the request");
      return new Response(null, { status: CLIENT_CLOSED_STATUS });
    }
    const rejected = valueRejected(error);
    if (rejected) {
      logger.warn({ request_id: c.get("requestId"), cause: rejected }, "database refused a value");
      return problemResponse(c, new ApiError("value_not_storable"));
    }
    const unavailable = databaseUnavailable(error);
    if (unavailable) {
      logger.warn({ request_id: c.get("requestId"), cause: unavailable }, "database unavailable");
      return problemResponse(
        c,
        new ApiError("database_unavailable", {
          headers: { "Retry-After": String(DATABASE_RETRY_AFTER_SECONDS) },
        }),
      );
    }
    logger.error({ err: error, request_id: c.get("requestId") }, "unhandled error");
    return problemResponse(c, new ApiError("internal_error"));
  };
}

/**
 * What Node's stream reports when the client went away mid-body: the connection reset or
 * closed early. Only the request's own stream reports these; a database connection lost the same
 * way carries a `code` of postgres.js's and is caught as unavailable first.
 */
function isClientAbort(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return (
    code === "ERR_STREAM_PREMATURE_CLOSE" ||
    (error instanceof Error && error.message === "aborted" && code === "ECONNRESET")
  );
}

/** A route table entry, as Hono lists them in `app.routes`. */
interface RouteEntry {
  method: string;
  path: string;
}

/**
 * 404 `route_not_found` for a path no route serves, and 405 `method_not_allowed` with `Allow`
 * for a path that is served, by other methods. The table is read on first use, once every
 * route is registered.
 */
export function createNotFound(routes: () => readonly RouteEntry[]): NotFoundHandler {
  let table: { pattern: RegExp; methods: Set<string> }[] | undefined;
  const build = () => {
    const byPath = new Map<string, Set<string>>();
    for (const { method, path } of routes()) {
      if (method === "ALL" || path.includes("*")) continue;
      const methods = byPath.get(path) ?? new Set<string>();
      methods.add(method);
      if (method === "GET") methods.add("HEAD");
      byPath.set(path, methods);
    }
    return [...byPath].map(([path, methods]) => ({
      pattern: new RegExp(
        `^${path
          .split(/:[^/]+/)
          .map((part) => part.replace(/[.+?^$()|[\]\\{}]/g, "\\$&"))
          .join("[^/]+")}/?$`,
      ),
      methods,
    }));
  };
  return function notFound(c) {
    table ??= build();
    const allowed = new Set<string>();
    for (const { pattern, methods } of table) {
      if (pattern.test(c.req.path)) for (const method of methods) allowed.add(method);
    }
    if (allowed.size === 0) return problemResponse(c, new ApiError("route_not_found"));
    return problemResponse(
      c,
      new ApiError("method_not_allowed", { headers: { Allow: [...allowed].sort().join(", ") } }),
    );
  };
}
