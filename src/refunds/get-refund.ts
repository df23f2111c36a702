import { createRoute } from "@hono/zod-openapi";
import { ApiError } from "../http/errors.js";
import { problemResponses, READ_ERRORS } from "../http/openapi.js";
import type { Router } from "../http/router.js";
import { findRefund } from "./refunds.queries.js";
import { RefundParamsSchema, RefundSchema, refundJson } from "./refunds.schema.js";

export const getRefundRoute = createRoute({
  method: "get",
  path: "/v1/refunds/{id}",
  operationId: "getRefund",
  tags: ["Refunds"],
  summary: "Retrieve a refund",
  description: "Returns one of your refunds as recorded now.",
  request: { params: RefundParamsSchema },
  responses: {
    200: { description: "The refund.", content: { "application/json": { schema: RefundSchema } } },
    ...problemResponses([...READ_ERRORS, "refund_not_found"]),
  },
});

export function registerGetRefund(router: Router) {
  router.openapi(getRefundRoute, async (c) => {
    const refund = await findRefund(c.var.db, c.var.tenant.id, c.req.valid("param").id);
    if (!refund) throw new ApiError("refund_not_found");
    return c.json(refundJson(refund), 200);
  });
}
