import type { MiddlewareHandler } from "hono";
import type { Metrics } from "../metrics.js";
import type { AppEnv } from "./env.js";
import { routeOf } from "./route.js";

/** Counts every request by method, route pattern and status, and times it. */
export function requestMetrics(metrics: Metrics): MiddlewareHandler<AppEnv> {
  return async function requestMetrics(c, next) {
    const started = performance.now();
    await next();
    metrics.observeRequest({
      method: c.req.method,
      route: routeOf(c),
      status: c.res.status,
      seconds: (performance.now() - started) / 1000,
    });
  };
}
