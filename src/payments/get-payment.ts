import { createRoute } from "@hono/zod-openapi";
import { ApiError } from "../http/errors.js";
import { problemResponses, READ_ERRORS } from "../http/openapi.js";
import type { Router } from "../http/router.js";
import { findPayment } from "./payments.queries.js";
import { PaymentParamsSchema, PaymentSchema, paymentJson } from "./payments.schema.js";

export const getPaymentRoute = createRoute({
  method: "get",
  path: "/v1/payments/{id}",
  operationId: "getPayment",
  tags: ["Payments"],
  summary: "Retrieve a payment",
  description: "Returns one of your payments as recorded now, refunds included.",
  request: { params: PaymentParamsSchema },
  responses: {
    200: {
      description: "The payment.",
      content: { "application/json": { schema: PaymentSchema } },
    },
    ...problemResponses([...READ_ERRORS, "payment_not_found"]),
  },
});

export function registerGetPayment(router: Router) {
  router.openapi(getPaymentRoute, async (c) => {
    const payment = await findPayment(c.var.db, c.var.tenant.id, c.req.valid("param").id);
    if (!payment) throw new ApiError("payment_not_found");
    return c.json(paymentJson(payment), 200);
  });
}
