import { createRoute, z } from "@hono/zod-openapi";
import type { Router } from "../http/router.js";
import type { Metrics } from "../metrics.js";

export const scrapeMetricsRoute = createRoute({
  method: "get",
  path: "/metrics",
  operationId: "scrapeMetrics",
  tags: ["Operations"],
  summary: "Prometheus metrics",
  description:
    "This process's metrics in the Prometheus text format: requests by route and status, " +
    "idempotency outcomes and waits, cleanup, pool use, process. Meant for the internal " +
    "network: it carries no tenant data and needs no API key. Each instance has its own.",
  security: [],
  responses: {
    200: {
      description: "The metrics, as Prometheus scrapes them.",
      content: {
        "text/plain": {
          schema: z.string().openapi({
            example: 'idempotency_requests_total{outcome="replayed"} 42',
          }),
        },
      },
    },
  },
});

export function registerScrapeMetrics(router: Router, metrics: Metrics) {
  router.openapi(scrapeMetricsRoute, async (c) =>
    c.text(await metrics.registry.metrics(), 200, { "Content-Type": metrics.registry.contentType }),
  );
}
