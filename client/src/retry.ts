/**
 * The retry policy: which failures are retried, and how long to wait before each retry.
 * client/README.md explains each choice.
 */

/** Why a failed attempt is retried. */
export type RetryReason =
  /** No answer: the connection failed or dropped before the response arrived. */
  | "network"
  /** No answer within `timeoutMs`. */
  | "timeout"
  /** 409 `idempotency_key_in_progress`: an earlier attempt with this key is still running. */
  | "in_progress"
  /** 429: the caller is sending too fast. */
  | "rate_limited"
  /** 503: the server or a dependency is unavailable and nothing was stored. */
  | "unavailable"
  /** 502 or 504 from a gateway in front of the server: as good as no answer. */
  | "gateway";

/** The bounds of a call's retries, all in milliseconds except `maxRetries`. */
export interface RetryBounds {
  /** Retries after the first attempt. */
  maxRetries: number;
  /** The ceiling of the first backoff; it doubles for every further retry. */
  initialRetryDelayMs: number;
  /** The longest single wait, whether from backoff or from `Retry-After`. */
  maxRetryDelayMs: number;
  /** The whole call, first attempt to last answer: no attempt starts or runs past it. */
  maxElapsedMs: number;
}

/**
 * Whether an answer's status and problem code are worth retrying with the same key. Only
 * answers that say "nothing final happened yet" are: every other answer is the request's final
 * outcome (stored and replayed as such), or a client mistake a retry repeats.
 */
export function retryReasonOf(status: number, code: string | undefined): RetryReason | undefined {
  switch (status) {
    case 409:
      return code === "idempotency_key_in_progress" ? "in_progress" : undefined;
    case 429:
      return "rate_limited";
    case 503:
      return "unavailable";
    case 502:
    case 504:
      return "gateway";
    default:
      return undefined;
  }
}

/**
 * A `Retry-After` value in milliseconds: delay-seconds or an HTTP date (RFC 9110, section
 * 10.2.3). Undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP date names its day and month; Date.parse alone would also read "-1" as a year.
  const date = /[a-z]/i.test(text) ? Date.parse(text) : Number.NaN;
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}

/**
 * The wait before retry number `retry` (1 for the first): exponential backoff with full jitter,
 * a uniform draw between 0 and `initialRetryDelayMs * 2^(retry - 1)` capped at
 * `maxRetryDelayMs`, so clients that failed together do not come back together. A `Retry-After`
 * is a floor (the server said when it expects to have an answer), capped at `maxRetryDelayMs`.
 */
export function retryDelayMs(
  retry: number,
  retryAfterMs: number | undefined,
  bounds: Pick<RetryBounds, "initialRetryDelayMs" | "maxRetryDelayMs">,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(bounds.maxRetryDelayMs, bounds.initialRetryDelayMs * 2 ** (retry - 1));
  const backoff = Math.floor(random() * ceiling);
  if (retryAfterMs === undefined) return backoff;
  return Math.max(backoff, Math.min(retryAfterMs, bounds.maxRetryDelayMs));
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
