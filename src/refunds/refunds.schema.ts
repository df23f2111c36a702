import { z } from "@hono/zod-openapi";
import { REFUND_STATUSES, type Refund } from "../db/schema.js";
import { AmountSchema, CurrencySchema, TimestampSchema } from "../http/schemas.js";
import { idPattern } from "../ids.js";
import { OrderIdSchema } from "../orders/orders.schema.js";
import { PaymentIdSchema } from "../payments/payments.schema.js";

export const REFUND_ID_PATTERN = idPattern("re");

export const RefundIdSchema = z
  .string()
  .regex(REFUND_ID_PATTERN, "is not a refund id")
  .openapi({ example: "re_01jdq3z9t4m7e9z5k2c8r4t1yc" });

export const CreateRefundBodySchema = z
  .strictObject({
    payment_id: PaymentIdSchema,
    amount: z.int().min(1).max(Number.MAX_SAFE_INTEGER).optional().openapi({
      description: "Minor units to refund. Default: all that is not refunded yet.",
      example: 500,
    }),
  })
  .openapi("CreateRefundRequest");
export type CreateRefundBody = z.infer<typeof CreateRefundBodySchema>;

export const RefundSchema = z
  .object({
    id: RefundIdSchema,
    object: z.literal("refund"),
    payment_id: PaymentIdSchema,
    order_id: OrderIdSchema,
    status: z.enum(REFUND_STATUSES).openapi({
      description: "`pending` until the provider confirms it, then `succeeded` or `failed`.",
    }),
    amount: AmountSchema,
    currency: CurrencySchema,
    failure_code: z.string().nullable().openapi({ example: null }),
    provider_reference: z
      .string()
      .nullable()
      .openapi({ description: "The provider's refund id.", example: "re_3Q0abc" }),
    created_at: TimestampSchema,
    updated_at: TimestampSchema,
  })
  .openapi("Refund");
export type RefundJson = z.infer<typeof RefundSchema>;

export const RefundParamsSchema = z.object({
  id: RefundIdSchema.openapi({ param: { name: "id", in: "path" } }),
});

export function refundJson(refund: Refund): RefundJson {
  return {
    id: refund.id,
    object: "refund",
    payment_id: refund.paymentId,
    order_id: refund.orderId,
    status: refund.status,
    amount: refund.amount,
    currency: refund.currency,
    failure_code: refund.failureCode,
    provider_reference: refund.providerRefundId,
    created_at: refund.createdAt.toISOString(),
    updated_at: refund.updatedAt.toISOString(),
  };
}
