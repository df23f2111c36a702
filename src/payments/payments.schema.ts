import { z } from "@hono/zod-openapi";
import { PAYMENT_STATUSES, type Payment } from "../db/schema.js";
import { AmountSchema, CurrencySchema, TimestampSchema, textSchema } from "../http/schemas.js";
import { idPattern } from "../ids.js";
import { OrderIdSchema } from "../orders/orders.schema.js";

export const PAYMENT_ID_PATTERN = idPattern("pay");

export const PaymentIdSchema = z
  .string()
  .regex(PAYMENT_ID_PATTERN, "is not a payment id")
  .openapi({ example: "pay_01jdq3x2k8m7e9z5k2c8r4t1yb" });

export const CreatePaymentBodySchema = z
  .strictObject({
    order_id: OrderIdSchema,
    payment_method: textSchema()
      .regex(/^pm_[A-Za-z0-9_]{1,100}$/, "is not a payment method id (pm_...)")
      .openapi({
        description:
          "A payment method id at the provider. With the local simulator, Stripe's test " +
          "methods: `pm_card_visa` succeeds, `pm_card_chargeDeclined` is declined.",
        example: "pm_card_visa",
      }),
  })
  .openapi("CreatePaymentRequest");
export type CreatePaymentBody = z.infer<typeof CreatePaymentBodySchema>;

export const PaymentSchema = z
  .object({
    id: PaymentIdSchema,
    object: z.literal("payment"),
    order_id: OrderIdSchema,
    status: z.enum(PAYMENT_STATUSES).openapi({
      description: "`processing` while the provider is asked, then `succeeded` or `failed`.",
    }),
    amount: AmountSchema,
    amount_refunded: AmountSchema,
    currency: CurrencySchema,
    payment_method: z.string(),
    failure_code: z.string().nullable().openapi({ example: null }),
    failure_message: z.string().nullable().openapi({ example: null }),
    provider_reference: z
      .string()
      .nullable()
      .openapi({ description: "The provider's PaymentIntent id.", example: "pi_3Q0abc" }),
    created_at: TimestampSchema,
    updated_at: TimestampSchema,
  })
  .openapi("Payment");
export type PaymentJson = z.infer<typeof PaymentSchema>;

export const PaymentParamsSchema = z.object({
  id: PaymentIdSchema.openapi({ param: { name: "id", in: "path" } }),
});

export function paymentJson(payment: Payment): PaymentJson {
  return {
    id: payment.id,
    object: "payment",
    order_id: payment.orderId,
    status: payment.status,
    amount: payment.amount,
    amount_refunded: payment.amountRefunded,
    currency: payment.currency,
    payment_method: payment.paymentMethod,
    failure_code: payment.failureCode,
    failure_message: payment.failureMessage,
    provider_reference: payment.providerPaymentIntentId,
    created_at: payment.createdAt.toISOString(),
    updated_at: payment.updatedAt.toISOString(),
  };
}
