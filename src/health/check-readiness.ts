import { createRoute, z } from "@hono/zod-openapi";
import { sql } from "drizzle-orm";
import type { Database } from "../db/client.js";
import { ApiError } from "../http/errors.js";
import { problemResponses } from "../http/openapi.js";
import type { Router } from "../http/router.js";
import type { Logger } from "../logger.js";

/**
 * How long the database may take to answer `SELECT 1` before the instance reports itself not
 * ready: well under the usual 5 s probe timeout, well over a healthy round trip.
 */
const READINESS_TIMEOUT_MS = 2000;

export const ReadinessSchema = z
  .object({ status: z.literal("ready") })
  .openapi("Readiness", { description: "The instance can serve requests: its database answers." });

export const checkReadinessRoute = createRoute({
  method: "get",
  path: "/readyz",
  operationId: "checkReadiness",
  tags: ["Operations"],
  summary: "Readiness probe",
  description:
    "Answers 200 when this instance can serve requests: its database answers within " +
    `${READINESS_TIMEOUT_MS / 1000} s and it is not shutting down. A load balancer should send ` +
    "traffic only to ready instances. No API key needed.",
  security: [],
  responses: {
    200: {
      description: "Ready for traffic.",
      content: { "application/json": { schema: ReadinessSchema, example: { status: "ready" } } },
    },
    ...problemResponses(["service_unavailable"]),
  },
});

export interface ReadinessOptions {
  db: Database;
  logger: Logger;
  /** True once shutdown began: readiness fails so load balancers stop sending traffic. */
  isShuttingDown?: () => boolean;
}

export function registerCheckReadiness(router: Router, options: ReadinessOptions) {
  router.openapi(checkReadinessRoute, async (c) => {
    if (options.isShuttingDown?.()) {
      throw new ApiError("service_unavailable", { detail: "Shutting down." });
    }
    try {
      await withDeadline(options.db.execute(sql`SELECT 1`), READINESS_TIMEOUT_MS);
    } catch (error) {
      options.logger.warn({ err: error }, "readiness check failed");
      throw new ApiError("service_unavailable", { detail: "The database is unreachable." });
    }
    return c.json({ status: "ready" as const }, 200);
  });
}

async function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
