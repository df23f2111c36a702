import { hash } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import type { Logger } from "../logger.js";
import type { AppEnv } from "./env.js";
import { routeOf } from "./route.js";

/** The first 16 hex digits of the key's SHA-256: enough to correlate, useless to replay. */
export function keyHash(key: string): string {
  return hash("sha256", key, "hex").slice(0, 16);
}

/** One log line per request, written when the response is ready. */
export function requestLog(logger: Logger): MiddlewareHandler<AppEnv> {
  return async function requestLog(c, next) {
    const started = performance.now();
    await next();
    const key = c.req.header("idempotency-key");
    logger.info(
      {
        request_id: c.get("requestId"),
        tenant_id: c.get("tenant")?.id,
        method: c.req.method,
        route: routeOf(c),
        status: c.res.status,
        duration_ms: Math.round((performance.now() - started) * 10) / 10,
        idempotency: c.get("idempotencyOutcome"),
        idempotency_key_hash: key ? keyHash(key) : undefined,
      },
      "request",
    );
  };
}
