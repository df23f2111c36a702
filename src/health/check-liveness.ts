import { createRoute, z } from "@hono/zod-openapi";
import type { Router } from "../http/router.js";

export const LivenessSchema = z
  .object({ status: z.literal("ok") })
  .openapi("Liveness", { description: "The process is up and serving HTTP." });

export const checkLivenessRoute = createRoute({
  method: "get",
  path: "/healthz",
  operationId: "checkLiveness",
  tags: ["Operations"],
  summary: "Liveness probe",
  description:
    "Answers 200 while the process serves HTTP, without touching the database: a failing " +
    "liveness probe means the process should be restarted. No API key needed.",
  security: [],
  responses: {
    200: {
      description: "The process is alive.",
      content: { "application/json": { schema: LivenessSchema, example: { status: "ok" } } },
    },
  },
});

export function registerCheckLiveness(router: Router) {
  router.openapi(checkLivenessRoute, (c) => c.json({ status: "ok" as const }, 200));
}
