import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { ApiError } from "../http/errors.js";
import { isJsonMediaType } from "../http/media-type.js";
import { requestFingerprint } from "./fingerprint.js";
import { parseIdempotencyKey } from "./key.js";
import type { KeyedRequest, StoredResponse } from "./store.js";

/** Validates the header and fingerprints the request; rejections here store nothing. */
export async function keyedRequest(c: Context, tenantId: string): Promise<KeyedRequest> {
  const parsed = parseIdempotencyKey(c.req.header("idempotency-key"));
  if (!parsed.ok) {
    throw new ApiError(
      parsed.reason === "missing" ? "idempotency_key_missing" : "idempotency_key_invalid",
    );
  }
  const text = await c.req.text();
  let body: unknown;
  if (text.length > 0) {
    try {
      body = isJsonMediaType(c.req.header("content-type")) ? JSON.parse(text) : text;
    } catch {
      throw new ApiError("malformed_json");
    }
  }
  let fingerprint: string;
  try {
    fingerprint = requestFingerprint(c.req.method, c.req.path, body);
  } catch (error) {
    throw new ApiError("validation_failed", {
      errors: [{ path: "json", message: (error as Error).message }],
    });
  }
  return { tenantId, key: parsed.key, method: c.req.method, path: c.req.path, fingerprint };
}

/** Sends a stored response: its status, body and stored headers, plus `Idempotent-Replayed`. */
export function sendStored(c: Context, stored: StoredResponse, replayed: boolean): Response {
  return c.body(stored.body, stored.status as ContentfulStatusCode, {
    ...stored.headers,
    "Idempotent-Replayed": String(replayed),
  });
}
