import { z } from "@hono/zod-openapi";
import { textSchema } from "../http/schemas.js";

/**
 * The events this API acts on, each with the shape of the object it reads. A signed event is
 * parsed with these before anything is applied, so an event of an unexpected shape is a 400
 * `validation_failed` naming the field, whoever signed it. Objects stay loose: Stripe adds
 * fields in every API version, and only the fields read here must hold.
 */

/** A provider's object id: short ASCII, which every column that stores one can hold. */
const ProviderIdSchema = z.string().regex(/^[A-Za-z0-9_]{1,255}$/, "is not a provider id");

/** Text a column stores: no U+0000, no lone surrogate, a bounded length. */
const StoredTextSchema = textSchema().max(5000);

const MetadataSchema = z.record(textSchema().max(40), textSchema().max(500));

const PaymentIntentSchema = z.looseObject({
  id: ProviderIdSchema,
  amount: z.int().min(0),
  currency: z.string().regex(/^[a-z]{3}$/, "is not a lower-case currency code"),
  metadata: MetadataSchema,
  last_payment_error: z
    .looseObject({
      code: StoredTextSchema.nullish(),
      decline_code: StoredTextSchema.nullish(),
      message: StoredTextSchema.nullish(),
    })
    .nullish(),
});

const RefundSchema = z.looseObject({
  id: ProviderIdSchema,
  status: z.string().nullable(),
  payment_intent: ProviderIdSchema.nullish(),
  failure_reason: StoredTextSchema.nullish(),
  metadata: MetadataSchema.nullish(),
});

const ChargeSchema = z.looseObject({
  id: ProviderIdSchema,
  payment_intent: ProviderIdSchema.nullish(),
  refunds: z.looseObject({ data: z.array(RefundSchema) }).nullish(),
});

function eventOf<T extends string, O extends z.ZodType>(type: T, object: O) {
  return z.looseObject({
    id: ProviderIdSchema,
    type: z.literal(type),
    data: z.looseObject({ object }),
  });
}

export const HandledEventSchema = z.discriminatedUnion("type", [
  eventOf("payment_intent.succeeded", PaymentIntentSchema),
  eventOf("payment_intent.payment_failed", PaymentIntentSchema),
  eventOf("charge.refunded", ChargeSchema),
]);

export type HandledEvent = z.infer<typeof HandledEventSchema>;
export type PaymentIntentObject = z.infer<typeof PaymentIntentSchema>;
export type ChargeObject = z.infer<typeof ChargeSchema>;

export const HANDLED_EVENT_TYPES: ReadonlySet<string> = new Set<HandledEvent["type"]>([
  "payment_intent.succeeded",
  "payment_intent.payment_failed",
  "charge.refunded",
]);
