import { z } from "@hono/zod-openapi";
import { ORDER_STATUSES, type Order, type OrderItem } from "../db/schema.js";
import {
  AmountSchema,
  CurrencySchema,
  isStorableText,
  listQuerySchema,
  listSchema,
  MetadataSchema,
  TimestampSchema,
  textSchema,
  UNSTORABLE_TEXT_MESSAGE,
} from "../http/schemas.js";
import { idPattern } from "../ids.js";

export const ORDER_ID_PATTERN = idPattern("ord");
const ORDER_ID_EXAMPLE = "ord_01jdq3v6x6m7e9z5k2c8r4t1ya";

export const OrderIdSchema = z
  .string()
  .regex(ORDER_ID_PATTERN, "is not an order id")
  .openapi({ description: "The order's id: `ord_` and a ULID.", example: ORDER_ID_EXAMPLE });

const CREATE_ORDER_EXAMPLE = {
  currency: "EUR",
  items: [
    { sku: "SKU-TSHIRT-M", name: "T-shirt, size M", quantity: 2, unit_amount: 1500 },
    { sku: "SKU-SOCKS", name: "Socks", quantity: 1, unit_amount: 500 },
  ],
  customer_email: "ada@example.com",
  metadata: { cart_id: "c_8812" },
};

/** An order as the document's examples show it: the one `CREATE_ORDER_EXAMPLE` creates. */
export const ORDER_EXAMPLE = {
  id: ORDER_ID_EXAMPLE,
  object: "order" as const,
  status: "pending" as const,
  currency: "EUR",
  amount_total: 3500,
  amount_refunded: 0,
  items: [
    { sku: "SKU-TSHIRT-M", name: "T-shirt, size M", quantity: 2, unit_amount: 1500, amount: 3000 },
    { sku: "SKU-SOCKS", name: "Socks", quantity: 1, unit_amount: 500, amount: 500 },
  ],
  customer_email: "ada@example.com",
  metadata: { cart_id: "c_8812" },
  created_at: "2026-11-28T12:00:00.000Z",
  updated_at: "2026-11-28T12:00:00.000Z",
};

export const OrderItemInputSchema = z
  .strictObject({
    sku: textSchema()
      .min(1)
      .max(100)
      .openapi({ description: "Your product code.", example: "SKU-TSHIRT-M" }),
    name: textSchema()
      .min(1)
      .max(250)
      .openapi({ description: "What the customer sees.", example: "T-shirt, size M" }),
    quantity: z.int().min(1).max(1_000_000).openapi({ example: 2 }),
    unit_amount: AmountSchema,
  })
  .openapi("OrderItemInput", {
    description: "A line of the order to create; `unit_amount` is the price of one unit.",
  });

export const CreateOrderBodySchema = z
  .strictObject({
    currency: CurrencySchema,
    items: z.array(OrderItemInputSchema).min(1).max(100),
    customer_email: z
      .email()
      .max(254)
      .refine(isStorableText, UNSTORABLE_TEXT_MESSAGE)
      .optional()
      .openapi({ description: "Where receipts go.", example: "ada@example.com" }),
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
      "1-100 items in one currency. The server computes `amount_total` as the sum of " +
      "quantity x unit_amount, which must stay within 2^53 - 1 minor units. Unknown fields are " +
      "rejected, and so is text holding U+0000 or an unpaired surrogate, which cannot be stored.",
    example: CREATE_ORDER_EXAMPLE,
  });
export type CreateOrderBody = z.infer<typeof CreateOrderBodySchema>;

export const OrderItemSchema = z
  .object({
    sku: z.string().openapi({ example: "SKU-TSHIRT-M" }),
    name: z.string().openapi({ example: "T-shirt, size M" }),
    quantity: z.int().openapi({ example: 2 }),
    unit_amount: AmountSchema,
    amount: AmountSchema,
  })
  .openapi("OrderItem", {
    description:
      "A line of an order, in the order it was sent; `amount` is quantity x unit_amount.",
  });

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
    customer_email: z.string().nullable().openapi({ example: "ada@example.com" }),
    metadata: MetadataSchema,
    created_at: TimestampSchema,
    updated_at: TimestampSchema.openapi({ description: "When the status last changed." }),
  })
  .openapi("Order", {
    description:
      "An order of one account: its items, its total (`amount_total`, the sum of the items' " +
      "amounts), how much of it was refunded (`amount_refunded`) and where it stands.",
    example: ORDER_EXAMPLE,
  });
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
