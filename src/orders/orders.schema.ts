import { z } from "@hono/zod-openapi";
import { ORDER_STATUSES, type Order, type OrderItem } from "../db/schema.js";
import {
  AmountSchema,
  CurrencySchema,
  listQuerySchema,
  listSchema,
  MetadataSchema,
  TimestampSchema,
} from "../http/schemas.js";
import { idPattern } from "../ids.js";

export const ORDER_ID_PATTERN = idPattern("ord");
const ORDER_ID_EXAMPLE = "ord_01jdq3v6x6m7e9z5k2c8r4t1ya";

export const OrderIdSchema = z
  .string()
  .regex(ORDER_ID_PATTERN, "is not an order id")
  .openapi({ example: ORDER_ID_EXAMPLE });

export const OrderItemInputSchema = z
  .strictObject({
    sku: z.string().min(1).max(100).openapi({ example: "SKU-TSHIRT-M" }),
    name: z.string().min(1).max(250).openapi({ example: "T-shirt, size M" }),
    quantity: z.int().min(1).max(1_000_000).openapi({ example: 2 }),
    unit_amount: AmountSchema,
  })
  .openapi("OrderItemInput");

export const CreateOrderBodySchema = z
  .strictObject({
    currency: CurrencySchema,
    items: z.array(OrderItemInputSchema).min(1).max(100),
    customer_email: z.email().max(254).optional().openapi({ example: "ada@example.com" }),
    metadata: MetadataSchema.optional(),
  })
  .superRefine((body, ctx) => {
    const total = body.items.reduce((sum, item) => sum + item.quantity * item.unit_amount, 0);
    if (!Number.isSafeInteger(total)) {
      ctx.addIssue({
        code: "custom",
        path: ["items"],
        message: "the order total exceeds 2^53 - 1 minor units",
      });
    }
  })
  .openapi("CreateOrderRequest", {
    description:
      "The order's total is computed by the server as the sum of quantity x unit_amount, " +
      "and must stay within 2^53 - 1 minor units.",
  });
export type CreateOrderBody = z.infer<typeof CreateOrderBodySchema>;

export const OrderItemSchema = z
  .object({
    sku: z.string(),
    name: z.string(),
    quantity: z.int(),
    unit_amount: AmountSchema,
    amount: AmountSchema,
  })
  .openapi("OrderItem");

export const OrderSchema = z
  .object({
    id: OrderIdSchema,
    object: z.literal("order"),
    status: z.enum(ORDER_STATUSES).openapi({
      description:
        "`pending` until paid or cancelled; a paid order becomes `partially_refunded` or " +
        "`refunded` as refunds succeed.",
    }),
    currency: CurrencySchema,
    amount_total: AmountSchema,
    amount_refunded: AmountSchema,
    items: z.array(OrderItemSchema),
    customer_email: z.string().nullable(),
    metadata: MetadataSchema,
    created_at: TimestampSchema,
    updated_at: TimestampSchema,
  })
  .openapi("Order");
export type OrderJson = z.infer<typeof OrderSchema>;

export const OrderListSchema = listSchema(OrderSchema, "OrderList");
export const ListOrdersQuerySchema = listQuerySchema(ORDER_ID_PATTERN, ORDER_ID_EXAMPLE);
export const OrderParamsSchema = z.object({
  id: OrderIdSchema.openapi({ param: { name: "id", in: "path" } }),
});

/** The wire form of an order: snake_case, ISO timestamps, items in line order. */
export function orderJson(order: Order, items: OrderItem[]): OrderJson {
  return {
    id: order.id,
    object: "order",
    status: order.status,
    currency: order.currency,
    amount_total: order.amountTotal,
    amount_refunded: order.amountRefunded,
    items: items.map((item) => ({
      sku: item.sku,
      name: item.name,
      quantity: item.quantity,
      unit_amount: item.unitAmount,
      amount: item.amount,
    })),
    customer_email: order.customerEmail,
    metadata: order.metadata,
    created_at: order.createdAt.toISOString(),
    updated_at: order.updatedAt.toISOString(),
  };
}
