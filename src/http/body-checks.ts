import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "./env.js";
import { ApiError } from "./errors.js";
import { isJsonMediaType } from "./media-type.js";

/**
 * How deep a JSON body may nest arrays and objects. The deepest body any operation accepts is
 * three levels (an order's `items[0].sku`); 32 leaves room for any client's framing while
 * keeping every recursive walk over the value (canonical form, schema validation) shallow.
 */
export const MAX_JSON_DEPTH = 32;

/**
 * Refuses a request body that would otherwise be repaired or misread further on, before any
 * idempotency work, so such a request stores nothing:
 *
 * - a `Content-Encoding` other than `identity`: 415 `content_encoding_unsupported` (the body
 *   would be parsed compressed);
 * - bytes that are not UTF-8: 400 `invalid_utf8` (decoding would store U+FFFD in their place);
 * - JSON nested deeper than `MAX_JSON_DEPTH`: 400 `json_too_deep` (recursive code would overflow the
 *   stack and answer with the engine's message).
 *
 * The body is read once, straight from the socket (@hono/node-server's direct read of the raw
 * request), and its decoded text put in Hono's body cache: every later `c.req.text()` and
 * `c.req.json()` (the idempotency layer, the route's validator) starts from that string. Had
 * Hono cached the bytes instead, each later read would convert them through a Fetch `Response`.
 *
 * @example app.use("/v1/*", bodyChecks())
 */
export function bodyChecks(): MiddlewareHandler<AppEnv> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  return async function bodyChecks(c, next) {
    const length = c.req.header("content-length");
    const hasBody =
      c.req.header("transfer-encoding") !== undefined || (length !== undefined && length !== "0");
    if (!hasBody) return next();
    const encoding = c.req.header("content-encoding")?.trim().toLowerCase();
    if (encoding !== undefined && encoding !== "" && encoding !== "identity") {
      throw new ApiError("content_encoding_unsupported");
    }
    const bytes = await c.req.raw.arrayBuffer();
    let text: string;
    try {
      text = decoder.decode(bytes);
    } catch {
      throw new ApiError("invalid_utf8");
    }
    // Hono keeps promises there (its type says the values themselves): reads `.then` them.
    (c.req.bodyCache as { text?: Promise<string> }).text = Promise.resolve(text);
    if (isJsonMediaType(c.req.header("content-type")) && nestingDepth(text) > MAX_JSON_DEPTH) {
      throw new ApiError("json_too_deep");
    }
    await next();
  };
}

/**
 * The deepest nesting of `[` and `{` in JSON text, outside strings; a single pass that never
 * recurses, whatever the input. Text that is not JSON gets some number, and fails parsing later.
 */
export function nestingDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const char = text.charCodeAt(i);
    if (inString) {
      if (char === 0x5c) i++;
      else if (char === 0x22) inString = false;
    } else if (char === 0x22) {
      inString = true;
    } else if (char === 0x5b || char === 0x7b) {
      depth++;
      if (depth > deepest) deepest = depth;
    } else if (char === 0x5d || char === 0x7d) {
      depth--;
    }
  }
  return deepest;
}
