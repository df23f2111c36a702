import { createRoute } from "@hono/zod-openapi";
import { ApiError } from "../http/errors.js";
import { problemResponses, READ_ERRORS } from "../http/openapi.js";
import type { Router } from "../http/router.js";
import { findOrder } from "./orders.queries.js";
import { OrderParamsSchema, OrderSchema, orderJson } from "./orders.schema.js";

export const getOrderRoute = createRoute({
  method: "get",
  path: "/v1/orders/{id}",
  operationId: "getOrder",
  tags: ["Orders"],
  summary: "Retrieve an order",
  description:
    "Returns one of your orders with its items and its current status. An id of another " +
    "account's order answers 404 `order_not_found`, as an unknown id does.",
  request: { params: OrderParamsSchema },
  responses: {
    200: {
      description: "The order as it is now.",
      content: { "application/json": { schema: OrderSchema } },
    },
    ...problemResponses([...READ_ERRORS, "order_not_found"]),
  },
});

export function registerGetOrder(router: Router) {
  router.openapi(getOrderRoute, async (c) => {
    const found = await findOrder(c.var.db, c.var.tenant.id, c.req.valid("param").id);
    if (!found) throw new ApiError("order_not_found");
    return c.json(orderJson(found.order, found.items), 200);
  });
}
