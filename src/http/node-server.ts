import { randomUUID } from "node:crypto";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { getRequestListener } from "@hono/node-server";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { ApiError, ERRORS, type ErrorCode, problemBody } from "./errors.js";
import { PROBLEM_CONTENT_TYPE, REFUSED_BY_SERVER } from "./problem.js";
import { UNMATCHED_ROUTE } from "./route.js";

/**
 * How long a client may take to send a whole request, headers and body, in milliseconds. Ten
 * seconds: the largest body this API takes (1 MB) crosses a slow mobile link in a few, and a
 * client that trickles bytes slower than that holds a connection it does not use.
 */
export const REQUEST_TIMEOUT_MS = 10_000;

/** Node's default limit on the request headers, which a 431 names. */
export const MAX_HEADER_BYTES = 16 * 1024;

export interface ServeAppOptions {
  fetch: (request: Request) => Response | Promise<Response>;
  port: number;
  hostname: string;
  logger: Logger;
  metrics: Metrics;
  /** Default `REQUEST_TIMEOUT_MS`. */
  requestTimeoutMs?: number;
}

/**
 * Serves the app on Node's HTTP server, answering what never reaches the app the way the app
 * answers: a request Node's parser refuses (headers over 16 KB: 431, bad framing: 400, not
 * received in time: 408) or one whose `Host` makes no URL (400) gets a problem+json body with
 * a `code` and a request id, a log line and a count, instead of Node's bare status line.
 */
export function serveApp(options: ServeAppOptions): Server {
  const requestTimeout = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const listener = getRequestListener(options.fetch, {
    hostname: options.hostname,
    // A request that could not be turned into a Request (its Host or target makes no URL).
    errorHandler: (error) => {
      const invalid = error instanceof Error && error.name === "RequestError";
      const cause = invalid ? "request target or host" : "unhandled";
      return refuse(options, invalid ? "malformed_request" : "internal_error", cause).response;
    },
  });
  const server = createServer(
    {
      maxHeaderSize: MAX_HEADER_BYTES,
      requestTimeout,
      headersTimeout: requestTimeout,
      // How often Node looks for requests past their timeout: a tenth of it, so a timed-out
      // request is answered within 10% of its limit.
      connectionsCheckingInterval: Math.max(100, Math.floor(requestTimeout / 10)),
      // Node would answer a missing Host with a bare 400; the handler below answers it.
      requireHostHeader: false,
    },
    (incoming, outgoing) => {
      if (incoming.httpVersion === "1.1" && incoming.headers.host === undefined) {
        const { body, requestId, status } = refuse(options, "malformed_request", "missing host");
        outgoing.writeHead(status, {
          "Content-Type": PROBLEM_CONTENT_TYPE,
          "Content-Length": Buffer.byteLength(body),
          "X-Request-Id": requestId,
          Connection: "close",
        });
        outgoing.end(body);
        return;
      }
      listener(incoming, outgoing);
    },
  );
  server.listen(options.port, options.hostname);
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    const code = parserErrorCode(error.code);
    if (code === undefined || !socket.writable) {
      // The client went away (a reset or an early close): nothing to answer, no fault of ours.
      options.logger.info({ cause: error.code }, "client closed the connection");
      socket.destroy();
      return;
    }
    // A request whose body timed out while the app read it has a response object but, until
    // the app answers, nothing on the wire: answer in its place, as Node itself does. Once a
    // response has begun, nothing else can be said on this connection.
    const pending = (socket as { _httpMessage?: ServerResponse })._httpMessage;
    if (pending?.headersSent) {
      socket.destroy();
      return;
    }
    // The app's error handler then counts that request, under its route, with this status.
    if (pending) {
      (pending.req as unknown as Record<symbol, number>)[REFUSED_BY_SERVER] = ERRORS[code].status;
    }
    const { body, requestId, status } = refuse(options, code, error.code ?? "unknown", {
      count: !pending,
    });
    socket.end(
      `HTTP/1.1 ${status} ${REASONS[status]}\r\n` +
        `Content-Type: ${PROBLEM_CONTENT_TYPE}\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        `X-Request-Id: ${requestId}\r\n` +
        "Connection: close\r\n\r\n" +
        body,
    );
  });
  return server;
}

const REASONS: Record<number, string> = {
  400: "Bad Request",
  500: "Internal Server Error",
  408: "Request Timeout",
  431: "Request Header Fields Too Large",
};

/** Our code for an error of Node's HTTP parser; undefined when the client is simply gone. */
function parserErrorCode(nodeCode: string | undefined): ErrorCode | undefined {
  switch (nodeCode) {
    case "ECONNRESET":
    case "EPIPE":
    case "HPE_INVALID_EOF_STATE": // the connection ended mid-request
      return undefined;
    case "HPE_HEADER_OVERFLOW":
      return "request_header_fields_too_large";
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return "request_timeout";
    default:
      return "malformed_request";
  }
}

/** Logs and counts a refused request, and builds its problem. */
function refuse(
  options: ServeAppOptions,
  code: ErrorCode,
  cause: string,
  { count = true }: { count?: boolean } = {},
) {
  const error = new ApiError(code);
  const requestId = randomUUID();
  const body = JSON.stringify(problemBody(error, requestId));
  options.logger.warn(
    { request_id: requestId, status: error.status, code, cause },
    "request refused",
  );
  if (count) {
    options.metrics.observeRequest({
      method: "unknown",
      route: UNMATCHED_ROUTE,
      status: error.status,
      seconds: 0,
    });
  }
  const response = new Response(body, {
    status: error.status,
    headers: {
      "Content-Type": PROBLEM_CONTENT_TYPE,
      "X-Request-Id": requestId,
      Connection: "close",
    },
  });
  return { body, requestId, status: error.status, response };
}
