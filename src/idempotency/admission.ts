import type { Context, Env } from "hono";
import type { IdempotencyOutcome, ResolvedOptions } from "./options.js";
import { IdempotencyRejection } from "./rejection.js";
import type { ReplayCache } from "./replay-cache.js";
import { fingerprinted, readKeyedRequest, requestText, sendStored } from "./request.js";
import type { KeyedRequest, StoredResponse } from "./store.js";

export type Report = (outcome: IdempotencyOutcome, waitedMs: number) => void;

/**
 * Reads a keyed request and answers it from the replay cache when it can: at once when its
 * text is byte for byte that of a request with the cached fingerprint (most retries) or of the
 * last request found to differ from it (a repeated 422), after fingerprinting it otherwise.
 * Returns the answer, or the request to go on with.
 */
export async function admit<E extends Env>(
  c: Context<E>,
  options: Pick<ResolvedOptions<E>, "tenantId" | "cache">,
  report: Report,
): Promise<Response | { request: KeyedRequest; text: string }> {
  const incoming = await readKeyedRequest(c, options.tenantId(c));
  const text = requestText(incoming);
  const cached = options.cache?.get(incoming);
  if (cached) {
    if (cached.requestText === text) {
      report("replayed", 0);
      return sendStored(c, cached.response, true);
    }
    if (cached.mismatchedText === text) {
      report("mismatched", 0);
      throw new IdempotencyRejection("idempotency_key_reused");
    }
  }
  const request = fingerprinted(incoming);
  if (cached) {
    if (cached.fingerprint !== request.fingerprint) options.cache?.setMismatched(incoming, text);
    return answerFromRecord(c, request, cached, report, 0);
  }
  return { request, text };
}

/** Puts a finished record in the replay cache; `text` only vouches for a matching fingerprint. */
export function remember(
  cache: ReplayCache | undefined,
  request: KeyedRequest,
  text: string,
  fingerprint: string,
  response: StoredResponse,
  expiresInMs: number,
): void {
  const requestText = fingerprint === request.fingerprint ? text : "";
  cache?.set(request, { fingerprint, requestText, response }, expiresInMs);
}

/** The answer to a request whose key has a finished record: its replay, or 422 if it differs. */
export function answerFromRecord(
  c: Context,
  request: KeyedRequest,
  record: { fingerprint: string; response: StoredResponse },
  report: Report,
  waitedMs: number,
): Response {
  if (record.fingerprint !== request.fingerprint) {
    report("mismatched", waitedMs);
    throw new IdempotencyRejection("idempotency_key_reused");
  }
  report("replayed", waitedMs);
  return sendStored(c, record.response, true);
}
