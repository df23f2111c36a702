import { hash } from "node:crypto";
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { requestFingerprint } from "./fingerprint.js";
import { parseIdempotencyKey } from "./key.js";
import { IdempotencyRejection } from "./rejection.js";
import type { KeyedRequest, StoredResponse } from "./store.js";

/** A request with a valid key, before its body is parsed. */
export interface IncomingRequest {
  tenantId: string;
  key: string;
  method: string;
  path: string;
  /** The body as received, "" when there is none. */
  body: string;
  contentType: string | undefined;
}

/** Validates the `Idempotency-Key` header and reads the body; rejections here store nothing. */
export async function readKeyedRequest(c: Context, tenantId: string): Promise<IncomingRequest> {
  const parsed = parseIdempotencyKey(c.req.header("idempotency-key"));
  if (!parsed.ok) {
    throw new IdempotencyRejection(
      parsed.reason === "missing" ? "idempotency_key_missing" : "idempotency_key_invalid",
    );
  }
  return {
    tenantId,
    key: parsed.key,
    method: c.req.method,
    path: c.req.path,
    body: await c.req.text(),
    contentType: c.req.header("content-type"),
  };
}

/**
 * The request's identity as the byte-exact text of its method, path and body: two requests with
 * the same text certainly have the same fingerprint, so a replay can be recognised without
 * parsing anything (the fingerprint decides only when the texts differ).
 */
export function requestText(request: IncomingRequest): string {
  return `${request.method} ${request.path}\n${request.body}`;
}

/** Parses and fingerprints the body: malformed JSON is a 400 that stores nothing. */
export function fingerprinted(request: IncomingRequest): KeyedRequest {
  let body: unknown;
  if (request.body.length > 0) {
    try {
      body = isJsonMediaType(request.contentType) ? JSON.parse(request.body) : request.body;
    } catch {
      throw new IdempotencyRejection("malformed_json");
    }
  }
  let fingerprint: string;
  try {
    fingerprint = requestFingerprint(request.method, request.path, body);
  } catch {
    // JSON that has no canonical form (a lone surrogate, a number beyond double range) is
    // identified by its exact text instead, so the route's schema names the offending field.
    // The prefix keeps it apart from every canonical body, which is a JSON value.
    fingerprint = hash(
      "sha256",
      `${request.method.toUpperCase()}\n${request.path}\nraw ${request.body}`,
      "hex",
    );
  }
  const { tenantId, key, method, path } = request;
  return { tenantId, key, method, path, fingerprint };
}

/** `application/json` and `application/*+json`, with or without parameters. */
function isJsonMediaType(contentType: string | undefined): boolean {
  return /^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i.test(contentType ?? "");
}

/** Sends a stored response: its status, body and stored headers, plus `Idempotent-Replayed`. */
export function sendStored(c: Context, stored: StoredResponse, replayed: boolean): Response {
  return c.body(stored.body, stored.status as ContentfulStatusCode, {
    ...stored.headers,
    "Idempotent-Replayed": String(replayed),
  });
}
