import { createRoute } from "@hono/zod-openapi";
import { problemResponses, READ_ERRORS } from "../http/openapi.js";
import type { Router } from "../http/router.js";
import { listOrders } from "./orders.queries.js";
import {
  ListOrdersQuerySchema,
  ORDER_EXAMPLE,
  OrderListSchema,
  orderJson,
} from "./orders.schema.js";

export const listOrdersRoute = createRoute({
  method: "get",
  path: "/v1/orders",
  operationId: "listOrders",
  tags: ["Orders"],
  summary: "List orders",
  description:
    "Your orders, newest first. Pass the last id of a page as `starting_after` to get the next; " +
    "`has_more` is false on the last page.",
  request: { query: ListOrdersQuerySchema },
  responses: {
    200: {
      description: "A page of orders, newest first.",
      content: {
        "application/json": {
          schema: OrderListSchema,
          example: { object: "list", data: [ORDER_EXAMPLE], has_more: false },
        },
      },
    },
    ...problemResponses(READ_ERRORS),
  },
});

export function registerListOrders(router: Router) {
  router.openapi(listOrdersRoute, async (c) => {
    const { limit, starting_after } = c.req.valid("query");
    const page = await listOrders(c.var.db, c.var.tenant.id, {
      limit,
      startingAfter: starting_after,
    });
    return c.json(
      {
        object: "list" as const,
        data: page.data.map(({ order, items }) => orderJson(order, items)),
        has_more: page.hasMore,
      },
      200,
    );
  });
}
