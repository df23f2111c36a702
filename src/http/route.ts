import type { Context } from "hono";
import { matchedRoutes } from "hono/route";

/** The label of a request that no route handles (404 `route_not_found`). */
export const UNMATCHED_ROUTE = "unmatched";

/**
 * The route pattern that handles a request (`/v1/orders/:id`), never the raw path, so logs
 * group by endpoint and metric labels stay few whatever paths clients send. Middleware is
 * registered for every method (`ALL`); a handler for one, so the last such match is the route.
 */
export function routeOf(c: Context): string {
  const handler = matchedRoutes(c).findLast((route) => route.method !== "ALL");
  return handler?.path ?? UNMATCHED_ROUTE;
}
