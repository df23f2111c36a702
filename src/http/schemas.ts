import { z } from "@hono/zod-openapi";

const ISO_4217 = new Set(Intl.supportedValuesOf("currency"));

/**
 * Whether PostgreSQL can store the text: it has no NUL character (U+0000) and no lone UTF-16
 * surrogate (U+D800-U+DFFF without its pair), both of which JSON can carry but a `text` or
 * `jsonb` column refuses.
 */
export function isStorableText(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const unit = value.charCodeAt(i);
    if (unit === 0) return false;
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = value.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return false;
      i++;
    } else if (unit >= 0xdc00 && unit <= 0xdfff) {
      return false;
    }
  }
  return true;
}

export const UNSTORABLE_TEXT_MESSAGE =
  "must not contain U+0000 or an unpaired surrogate (U+D800-U+DFFF)";

/**
 * Every text field of a request body starts here, so text the database cannot store is a 400
 * `validation_failed` naming the field rather than a failed insert.
 */
export function textSchema() {
  return z.string().refine(isStorableText, UNSTORABLE_TEXT_MESSAGE);
}

/** An ISO 4217 currency code in upper case. */
export const CurrencySchema = z
  .string()
  .regex(/^[A-Z]{3}$/, "must be three upper-case letters")
  .refine((code) => ISO_4217.has(code), "is not an ISO 4217 currency code")
  .openapi("Currency", {
    description:
      "An ISO 4217 currency code, upper case (`EUR`, `USD`, `JPY`). It fixes the minor unit " +
      "of every amount next to it. A code that is not in ISO 4217 is a 400 `validation_failed`.",
    example: "EUR",
  });

/** Money: an integer number of the currency's minor units (cents for EUR). */
export const AmountSchema = z
  .int()
  .min(0)
  .max(Number.MAX_SAFE_INTEGER)
  .openapi("Amount", {
    description:
      "Money: an integer amount in the currency's minor units, never a decimal (2500 with " +
      "`EUR` is 25.00 EUR; 2500 with `JPY` is 2500 yen), from 0 to 2^53 - 1.",
    example: 2500,
  });

/** Free-form string pairs a client attaches to an object. */
export const MetadataSchema = z
  .record(textSchema().min(1).max(40), textSchema().max(500))
  .refine((metadata) => Object.keys(metadata).length <= 50, "may hold at most 50 keys")
  .openapi("Metadata", {
    description: "Up to 50 string pairs of your own; keys up to 40 characters, values up to 500.",
    maxProperties: 50,
    example: { cart_id: "c_8812" },
  });

/** A point in time, ISO 8601 in UTC with milliseconds. */
export const TimestampSchema = z.iso.datetime().openapi({
  description: "ISO 8601, UTC.",
  example: "2026-11-28T12:00:00.000Z",
});

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

/** What every list shares: `data` is added per resource by `listSchema`. */
export const ListEnvelopeSchema = z
  .object({
    object: z.literal("list"),
    has_more: z.boolean().openapi({
      description: "Whether another page follows; pass the last id as `starting_after` to get it.",
    }),
  })
  .openapi("ListEnvelope", {
    description: "A page of a list, newest first. Every list operation answers this shape.",
  });

/** The envelope of every list: newest first, `has_more` tells whether another page exists. */
export function listSchema<T extends z.ZodType>(item: T, name: string) {
  return ListEnvelopeSchema.extend({
    data: z.array(item).openapi({ description: "Up to `limit` objects, newest first." }),
  }).openapi(name);
}
