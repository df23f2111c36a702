import { createRoute } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../http/env.js";
import {
  CreatedHeaders,
  IdempotencyKeyHeaders,
  problemResponses,
  WRITE_ERRORS,
} from "../http/openapi.js";
import type { Router } from "../http/router.js";
import { insertOrder } from "./orders.queries.js";
import { CreateOrderBodySchema, OrderSchema, orderJson } from "./orders.schema.js";

export const createOrderRoute = createRoute({
  method: "post",
  path: "/v1/orders",
  operationId: "createOrder",
  tags: ["Orders"],
  summary: "Create an order",
  description:
    "Creates a `pending` order from its items; the server computes `amount_total` and each " +
    "item's `amount`. Requires an `Idempotency-Key`: a retry with the same key and body gets " +
    "the same 201 and the same order (`Idempotent-Replayed: true`), never a second order.",
  request: {
    headers: IdempotencyKeyHeaders,
    body: {
      required: true,
      content: { "application/json": { schema: CreateOrderBodySchema } },
    },
  },
  responses: {
    201: {
      description:
        "The order was created, or this is the stored answer of its creation. `Location` is " +
        "the order's URL.",
      headers: CreatedHeaders,
      content: { "application/json": { schema: OrderSchema } },
    },
    ...problemResponses(WRITE_ERRORS),
  },
});

export function registerCreateOrder(router: Router, idempotent: MiddlewareHandler<AppEnv>) {
  router.openapi({ ...createOrderRoute, middleware: [idempotent] }, async (c) => {
    const created = insertOrder(
      c.var.tx,
      c.var.tenant.id,
      c.req.valid("json"),
      c.var.transactionTime,
    );
    return c.json(orderJson(created.order, created.items), 201, {
      Location: `/v1/orders/${created.order.id}`,
    });
  });
}
