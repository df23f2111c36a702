import type { Problem, ProblemCode, ProblemOf } from "./types.js";

/** What every error a call raises carries, whatever went wrong. */
interface CallFacts {
  /** The call's `Idempotency-Key` (undefined for reads): persist it to retry the call later. */
  idempotencyKey: string | undefined;
  /** How many HTTP requests the call made before giving up. */
  attempts: number;
}

/** The base class of every error a call raises, other than the caller's own abort. */
export abstract class ApiClientError extends Error {
  readonly idempotencyKey: string | undefined;
  readonly attempts: number;

  constructor(message: string, facts: CallFacts, options?: { cause?: unknown }) {
    super(message, options);
    this.idempotencyKey = facts.idempotencyKey;
    this.attempts = facts.attempts;
  }
}

/**
 * The server answered with a problem document (`application/problem+json`). Branch on `code`,
 * which is typed by the codes openapi.yaml documents; {@link isApiProblem} narrows it.
 */
export class ApiProblem<C extends ProblemCode = ProblemCode> extends ApiClientError {
  override name = "ApiProblem";
  readonly status: number;
  readonly code: C;
  readonly detail: string;
  readonly requestId: string;
  /** The whole problem body, extension members (`errors`, `decline_code`, ...) included. */
  readonly body: ProblemOf<C>;

  constructor(body: ProblemOf<C>, status: number, facts: CallFacts) {
    super(`${status} ${body.code}: ${body.detail}`, facts);
    this.status = status;
    this.code = body.code;
    this.detail = body.detail;
    this.requestId = body.request_id;
    this.body = body;
  }
}

/**
 * No answer arrived: the connection failed or dropped, or an attempt outlived `timeoutMs`,
 * and so did every retry. The server may or may not have executed the request; a later call
 * with the same `idempotencyKey` finds out without doing it twice.
 */
export class ApiConnectionError extends ApiClientError {
  override name = "ApiConnectionError";
  /** True when the last attempt was cut off by `timeoutMs` rather than by the network. */
  readonly timedOut: boolean;

  constructor(message: string, timedOut: boolean, facts: CallFacts, cause: unknown) {
    super(message, facts, { cause });
    this.timedOut = timedOut;
  }
}

/**
 * An answer that is neither a success this client can parse nor a problem document, such as
 * a proxy's HTML error page.
 */
export class ApiResponseError extends ApiClientError {
  override name = "ApiResponseError";
  readonly status: number;
  readonly requestId: string;
  /** The body as received. */
  readonly text: string;

  constructor(status: number, requestId: string, text: string, facts: CallFacts) {
    super(`unexpected ${status} answer: ${text.slice(0, 200)}`, facts);
    this.status = status;
    this.requestId = requestId;
    this.text = text;
  }
}

/**
 * True when `error` is an {@link ApiProblem}, with one of `codes` if any are given; narrows the
 * type, so `error.body` shows the members of that code.
 *
 * @example
 * if (isApiProblem(error, "payment_declined")) console.log(error.body.decline_code);
 */
export function isApiProblem<C extends ProblemCode = ProblemCode>(
  error: unknown,
  ...codes: C[]
): error is ApiProblem<C> {
  return (
    error instanceof ApiProblem &&
    (codes.length === 0 || (codes as ProblemCode[]).includes(error.code))
  );
}

/** A parsed body that is a problem document: an object with a string `code` and `detail`. */
export function asProblem(body: unknown): Problem | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const { code, detail } = body as Record<string, unknown>;
  return typeof code === "string" && typeof detail === "string" ? (body as Problem) : undefined;
}
