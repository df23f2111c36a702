import { ApiConnectionError, ApiProblem, ApiResponseError, asProblem } from "./errors.js";
import type { paths } from "./generated/api.js";
import { newIdempotencyKey } from "./idempotency-key.js";
import {
  parseRetryAfter,
  type RetryBounds,
  type RetryReason,
  retryDelayMs,
  retryReasonOf,
  sleep,
} from "./retry.js";
import type {
  ApiResult,
  CreateOrderRequest,
  CreatePaymentRequest,
  CreateRefundRequest,
  ListOrdersQuery,
  Order,
  OrderList,
  Payment,
  Refund,
  WriteResult,
} from "./types.js";

/**
 * Retries after the first attempt. Four covers a dropped connection plus a few 409s while an
 * earlier attempt finishes, or a 503 while the payment provider's answer is still unknown.
 */
export const DEFAULT_MAX_RETRIES = 4;
/**
 * One attempt's limit. A payment waits for the provider (10 s per try and one retry by the
 * server's defaults) and may first wait up to 5 s for an earlier attempt of its key, so an
 * honest answer can take close to half a minute: a minute leaves it room on slow networks.
 */
export const DEFAULT_TIMEOUT_MS = 60_000;
/** The first backoff's ceiling: quick enough for a blip, then 1, 2, 4 s. */
export const DEFAULT_INITIAL_RETRY_DELAY_MS = 500;
/** The longest single wait: a server's `Retry-After` above it is cut down to it. */
export const DEFAULT_MAX_RETRY_DELAY_MS = 10_000;
/** The whole call: two attempts that both run to `timeoutMs`, or many quick ones. */
export const DEFAULT_MAX_ELAPSED_MS = 120_000;

/** A retry about to happen, for logs and metrics. */
export interface RetryEvent {
  method: string;
  path: string;
  /** The attempt that failed, 1 for the first. */
  attempt: number;
  reason: RetryReason;
  /** The wait before the next attempt. */
  delayMs: number;
  /** The status of the failed attempt, absent when no answer arrived. */
  status?: number;
  idempotencyKey: string | undefined;
}

export interface ClientOptions {
  /** Where the API listens, such as `http://127.0.0.1:3000`. */
  baseUrl: string;
  /** The tenant's API key, sent as `Authorization: Bearer <apiKey>`. */
  apiKey: string;
  /** Retries after the first attempt. Default {@link DEFAULT_MAX_RETRIES} (4); 0 disables them. */
  maxRetries?: number;
  /** One attempt's limit, answer body included. Default {@link DEFAULT_TIMEOUT_MS} (60 s). */
  timeoutMs?: number;
  /** The first backoff's ceiling. Default {@link DEFAULT_INITIAL_RETRY_DELAY_MS} (500 ms). */
  initialRetryDelayMs?: number;
  /** The longest single wait, `Retry-After` included. Default {@link DEFAULT_MAX_RETRY_DELAY_MS} (10 s). */
  maxRetryDelayMs?: number;
  /** The whole call, all attempts and waits. Default {@link DEFAULT_MAX_ELAPSED_MS} (120 s). */
  maxElapsedMs?: number;
  /** The `fetch` to use. Default: the global one. */
  fetch?: typeof fetch;
  /** Called before each wait for a retry. */
  onRetry?: (event: RetryEvent) => void;
}

/** Options of one call. */
export interface CallOptions {
  /** Stops the call, during an attempt or a wait; it then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Options of one write. */
export interface WriteOptions extends CallOptions {
  /**
   * The key to send. Default: a new UUID per call. Pass your own (and store it before the call)
   * to retry the same logical write after your process restarts.
   */
  idempotencyKey?: string;
}

export type Client = ReturnType<typeof createClient>;

interface Request {
  method: "GET" | "POST";
  /** The path, parameters filled in. */
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  /** True for the idempotent writes, which carry an `Idempotency-Key`. */
  write: boolean;
}

type Attempt =
  | { kind: "answer"; response: Response; text: string }
  | { kind: "no_answer"; error: unknown; timedOut: boolean };

/**
 * A client of the payments API whose writes are safe to retry: each write call gets an
 * `Idempotency-Key` (or uses the caller's) and sends the same key on every attempt; failures
 * that mean "no final outcome yet" are retried with backoff and full jitter, honouring
 * `Retry-After`, within `maxRetries` and `maxElapsedMs`; everything else is raised at once.
 *
 * @example
 * const api = createClient({ baseUrl: "http://127.0.0.1:3000", apiKey });
 * const { data: order, replayed } = await api.orders.create({ currency: "EUR", items });
 */
export function createClient(options: ClientOptions) {
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  if (!/^https?:\/\//.test(baseUrl))
    throw new Error("createClient: baseUrl must be an http(s) URL");
  if (options.apiKey === "") throw new Error("createClient: apiKey is empty");
  const bounds: RetryBounds = {
    maxRetries: count("maxRetries", options.maxRetries, DEFAULT_MAX_RETRIES),
    initialRetryDelayMs: count(
      "initialRetryDelayMs",
      options.initialRetryDelayMs,
      DEFAULT_INITIAL_RETRY_DELAY_MS,
    ),
    maxRetryDelayMs: count("maxRetryDelayMs", options.maxRetryDelayMs, DEFAULT_MAX_RETRY_DELAY_MS),
    maxElapsedMs: count("maxElapsedMs", options.maxElapsedMs, DEFAULT_MAX_ELAPSED_MS),
  };
  const timeoutMs = count("timeoutMs", options.timeoutMs, DEFAULT_TIMEOUT_MS);
  if (timeoutMs === 0) throw new Error("createClient: timeoutMs must be positive");
  const fetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init));

  async function attempt(url: string, init: RequestInit, limitMs: number, signal?: AbortSignal) {
    const timeout = AbortSignal.timeout(limitMs);
    try {
      const response = await fetchFn(url, {
        ...init,
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
      return { kind: "answer", response, text: await response.text() } satisfies Attempt;
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      return { kind: "no_answer", error, timedOut: timeout.aborted } satisfies Attempt;
    }
  }

  async function call<T>(request: Request, callOptions: WriteOptions = {}) {
    const { signal } = callOptions;
    const idempotencyKey = request.write
      ? (callOptions.idempotencyKey ?? newIdempotencyKey())
      : undefined;
    const headers: Record<string, string> = {
      Accept: "application/json",
      Authorization: `Bearer ${options.apiKey}`,
    };
    if (idempotencyKey !== undefined) headers["Idempotency-Key"] = idempotencyKey;
    if (request.body !== undefined) headers["Content-Type"] = "application/json";
    const init: RequestInit = {
      method: request.method,
      headers,
      body: request.body === undefined ? undefined : JSON.stringify(request.body),
    };
    const url = `${baseUrl}${request.path}${queryString(request.query)}`;
    const label = `${request.method} ${request.path}`;
    const started = Date.now();

    for (let attempts = 1; ; attempts++) {
      signal?.throwIfAborted();
      // The last attempt gets only what is left of the call's time.
      const limitMs = Math.max(
        1,
        Math.min(timeoutMs, bounds.maxElapsedMs - (Date.now() - started)),
      );
      const outcome = await attempt(url, init, limitMs, signal);
      const facts = { idempotencyKey, attempts };
      let error: Error;
      let reason: RetryReason | undefined;
      let retryAfterMs: number | undefined;
      let status: number | undefined;

      if (outcome.kind === "no_answer") {
        reason = outcome.timedOut ? "timeout" : "network";
        const what = outcome.timedOut
          ? `no answer within ${limitMs} ms`
          : `connection failed (${describe(outcome.error)})`;
        error = new ApiConnectionError(
          `${label}: ${what}, after ${attempts} attempt${attempts === 1 ? "" : "s"}`,
          outcome.timedOut,
          facts,
          outcome.error,
        );
      } else {
        const { response, text } = outcome;
        status = response.status;
        const requestId = response.headers.get("X-Request-Id") ?? "";
        const body = parseJson(text);
        if (response.ok && body.ok) {
          return {
            data: body.value as T,
            status,
            replayed: response.headers.get("Idempotent-Replayed") === "true",
            requestId,
            attempts,
            idempotencyKey,
          };
        }
        const problem = response.ok || !body.ok ? undefined : asProblem(body.value);
        reason = retryReasonOf(status, problem?.code);
        retryAfterMs = parseRetryAfter(response.headers.get("Retry-After"), Date.now());
        error = problem
          ? new ApiProblem(problem, status, facts)
          : new ApiResponseError(status, requestId, text, facts);
      }

      if (reason === undefined || attempts > bounds.maxRetries) throw error;
      const delayMs = retryDelayMs(attempts, retryAfterMs, bounds);
      if (Date.now() - started + delayMs >= bounds.maxElapsedMs) throw error;
      options.onRetry?.({
        method: request.method,
        path: request.path,
        attempt: attempts,
        reason,
        delayMs,
        idempotencyKey,
        ...(status === undefined ? {} : { status }),
      });
      await sleep(delayMs, signal);
    }
  }

  const read = <T>(path: string, callOptions?: CallOptions, query?: Request["query"]) =>
    call<T>({ method: "GET", path, query, write: false }, callOptions) as Promise<ApiResult<T>>;
  const write = <T>(path: string, body: unknown, callOptions?: WriteOptions) =>
    call<T>({ method: "POST", path, body, write: true }, callOptions) as Promise<WriteResult<T>>;

  return {
    orders: {
      /** `createOrder`: a `pending` order; 201. */
      create: (body: CreateOrderRequest, callOptions?: WriteOptions) =>
        write<Order>(pathOf("/v1/orders"), body, callOptions),
      /** `getOrder`. */
      get: (id: string, callOptions?: CallOptions) =>
        read<Order>(pathOf("/v1/orders/{id}", id), callOptions),
      /** `listOrders`: newest first; pass the last id as `starting_after` for the next page. */
      list: (query: ListOrdersQuery = {}, callOptions?: CallOptions) =>
        read<OrderList>(pathOf("/v1/orders"), callOptions, query),
      /** `cancelOrder`: a pending order becomes `cancelled`; 409 `order_not_cancellable` otherwise. */
      cancel: (id: string, callOptions?: WriteOptions) =>
        write<Order>(pathOf("/v1/orders/{id}/cancel", id), undefined, callOptions),
    },
    payments: {
      /** `createPayment`: charges the order; 402 `payment_declined` keeps it payable. */
      create: (body: CreatePaymentRequest, callOptions?: WriteOptions) =>
        write<Payment>(pathOf("/v1/payments"), body, callOptions),
      /** `getPayment`. */
      get: (id: string, callOptions?: CallOptions) =>
        read<Payment>(pathOf("/v1/payments/{id}", id), callOptions),
    },
    refunds: {
      /** `createRefund`: refunds `amount` (default: what is left) of a succeeded payment. */
      create: (body: CreateRefundRequest, callOptions?: WriteOptions) =>
        write<Refund>(pathOf("/v1/refunds"), body, callOptions),
      /** `getRefund`. */
      get: (id: string, callOptions?: CallOptions) =>
        read<Refund>(pathOf("/v1/refunds/{id}", id), callOptions),
    },
  };
}

/** A documented path with its `{id}` filled in; a path openapi.yaml lacks does not compile. */
function pathOf(template: keyof paths, id?: string): string {
  return id === undefined ? template : template.replace("{id}", encodeURIComponent(id));
}

function queryString(query: Request["query"]): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined) params.set(name, String(value));
  }
  const text = params.toString();
  return text === "" ? "" : `?${text}`;
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

function count(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`createClient: ${name} must be a non-negative integer, got ${value}`);
  }
  return value;
}

/** The message of a fetch failure and of its cause, where Node puts the socket error. */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return `${error.message}${cause}`;
}
