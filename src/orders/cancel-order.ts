import { createRoute } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../http/env.js";
import { ApiError } from "../http/errors.js";
import {
  IdempotencyKeyHeaders,
  IdempotentReplayedHeader,
  problemResponses,
  WRITE_ERRORS,
} from "../http/openapi.js";
import type { Router } from "../http/router.js";
import { lockOrder, updateOrderStatus } from "./orders.queries.js";
import { ORDER_EXAMPLE, OrderParamsSchema, OrderSchema, orderJson } from "./orders.schema.js";

export const cancelOrderRoute = createRoute({
  method: "post",
  path: "/v1/orders/{id}/cancel",
  operationId: "cancelOrder",
  tags: ["Orders"],
  summary: "Cancel an order",
  description:
    "Cancels a `pending` order with no payment in progress; send no body (and no " +
    "`Content-Type`). Otherwise 409 `order_not_cancellable`. Requires an `Idempotency-Key`: " +
    "the 200, and a 404 or 409, are stored under the key and replayed to every retry.",
  request: {
    params: OrderParamsSchema,
    headers: IdempotencyKeyHeaders,
  },
  responses: {
    200: {
      description: "The cancelled order.",
      headers: IdempotentReplayedHeader,
      content: {
        "application/json": {
          schema: OrderSchema,
          example: {
            ...ORDER_EXAMPLE,
            status: "cancelled",
            updated_at: "2026-11-28T12:05:00.000Z",
          },
        },
      },
    },
    ...problemResponses([...WRITE_ERRORS, "order_not_found", "order_not_cancellable"]),
  },
});

export function registerCancelOrder(router: Router, idempotent: MiddlewareHandler<AppEnv>) {
  router.openapi({ ...cancelOrderRoute, middleware: [idempotent] }, async (c) => {
    const tenantId = c.var.tenant.id;
    const found = await lockOrder(c.var.tx, tenantId, c.req.valid("param").id, { items: true });
    if (!found) throw new ApiError("order_not_found");
    if (found.order.status !== "pending") {
      throw new ApiError("order_not_cancellable", {
        detail: `Only a pending order can be cancelled; this one is ${found.order.status}.`,
      });
    }
    // The order row lock serialises this with a payment's first phase, so no payment can
    // start after this check; one already processing may still take the money.
    if (found.hasLivePayment) {
      throw new ApiError("order_not_cancellable", {
        detail: "A payment of this order is in progress; wait for its outcome.",
      });
    }
    const order = await updateOrderStatus(c.var.tx, tenantId, found.order.id, "cancelled");
    return c.json(orderJson(order, found.items), 200);
  });
}
