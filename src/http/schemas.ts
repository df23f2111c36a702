import { z } from "@hono/zod-openapi";

const ISO_4217 = new Set(Intl.supportedValuesOf("currency"));

/** An ISO 4217 currency code in upper case. */
export const CurrencySchema = z
  .string()
  .regex(/^[A-Z]{3}$/, "must be three upper-case letters")
  .refine((code) => ISO_4217.has(code), "is not an ISO 4217 currency code")
  .openapi("Currency", {
    description: "ISO 4217 currency code, upper case.",
    example: "EUR",
  });

/** Money: an integer number of the currency's minor units (cents for EUR). */
export const AmountSchema = z.int().min(0).max(Number.MAX_SAFE_INTEGER).openapi("Amount", {
  description:
    "An amount in the currency's minor units (2500 EUR = 25.00 EUR), from 0 to 2^53 - 1.",
  example: 2500,
});

export const MetadataSchema = z
  .record(z.string().min(1).max(40), z.string().max(500))
  .refine((metadata) => Object.keys(metadata).length <= 50, "may hold at most 50 keys")
  .openapi("Metadata", {
    description: "Up to 50 string pairs of your own; keys up to 40 characters, values up to 500.",
    maxProperties: 50,
    example: { cart_id: "c_8812" },
  });

export const TimestampSchema = z.iso.datetime().openapi({ example: "2026-11-28T12:00:00.000Z" });

/** Query parameters of every list operation. */
export function listQuerySchema(idPattern: RegExp, example: string) {
  return z.object({
    limit: z.coerce
      .number()
      .int()
      .min(1)
      .max(100)
      .default(10)
      .openapi({ description: "How many objects to return, 1-100.", example: 10 }),
    starting_after: z
      .string()
      .regex(idPattern, "is not an id of this resource")
      .optional()
      .openapi({
        description: "A cursor: the id of the last object of the previous page.",
        example,
      }),
  });
}

/** The envelope of every list: newest first, `has_more` tells whether another page exists. */
export function listSchema<T extends z.ZodType>(item: T, name: string) {
  return z
    .object({
      object: z.literal("list"),
      data: z.array(item),
      has_more: z.boolean(),
    })
    .openapi(name);
}
