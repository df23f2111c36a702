import { createRoute, z } from "@hono/zod-openapi";
import type { Database } from "../db/client.js";
import { ApiError } from "../http/errors.js";
import { problemResponses } from "../http/openapi.js";
import type { Router } from "../http/router.js";
import type { Logger } from "../logger.js";
import type { PaymentProvider } from "../provider/stripe-provider.js";
import { applyProviderEvent } from "./apply-event.js";
import { HANDLED_EVENT_TYPES, HandledEventSchema } from "./webhook-events.schema.js";

const StripeEventSchema = z
  .looseObject({
    id: z.string().openapi({ example: "evt_1Q0abc" }),
    type: z.string().openapi({ example: "payment_intent.succeeded" }),
    data: z.looseObject({ object: z.looseObject({}) }),
  })
  .openapi("StripeEvent", {
    description: "A Stripe event, as Stripe (or the simulator) sends it.",
  });

export const receiveStripeWebhookRoute = createRoute({
  method: "post",
  path: "/v1/webhooks/stripe",
  operationId: "receiveStripeWebhook",
  tags: ["Webhooks"],
  summary: "Receive a Stripe event",
  description:
    "The endpoint the payment provider delivers events to. Authenticated by the " +
    "`Stripe-Signature` header, not an API key. Each event is applied once, by its id, " +
    "however often it is delivered and whether it arrives before or after the API response " +
    "for the same payment. A signed event of a handled type (`payment_intent.succeeded`, " +
    "`payment_intent.payment_failed`, `charge.refunded`) whose object lacks a field this API " +
    "reads, or holds text it cannot store, is a 400 `validation_failed`; an event whose object " +
    "contradicts our record (another payment intent, tenant, amount or outcome) changes " +
    "nothing and is answered `ignored`, as is every other event type.",
  security: [],
  request: {
    headers: z.object({
      "stripe-signature": z
        .string()
        .optional()
        .openapi({
          param: { name: "stripe-signature", in: "header", required: true },
          example:
            "t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
        }),
    }),
    body: { required: true, content: { "application/json": { schema: StripeEventSchema } } },
  },
  responses: {
    200: {
      description:
        "The event was applied now, had been applied before, or concerns nothing of ours.",
      content: {
        "application/json": {
          schema: z
            .object({
              received: z.literal(true),
              result: z.enum(["applied", "duplicate", "ignored"]),
            })
            .openapi("WebhookReceipt"),
        },
      },
    },
    ...problemResponses([
      "webhook_signature_invalid",
      "malformed_json",
      "validation_failed",
      "payload_too_large",
      "unsupported_media_type",
      "content_encoding_unsupported",
      "invalid_utf8",
      "json_too_deep",
      "value_not_storable",
      "internal_error",
      "database_unavailable",
    ]),
  },
});

export function registerReceiveStripeWebhook(
  router: Router,
  deps: { db: Database; provider: PaymentProvider; logger: Logger },
) {
  router.openapi(receiveStripeWebhookRoute, async (c) => {
    const payload = await c.req.text();
    let event: Awaited<ReturnType<PaymentProvider["verifyWebhook"]>>;
    try {
      event = await deps.provider.verifyWebhook(payload, c.req.header("stripe-signature"));
    } catch {
      throw new ApiError("webhook_signature_invalid");
    }
    if (!HANDLED_EVENT_TYPES.has(event.type)) {
      deps.logger.info({ event_id: event.id, type: event.type, result: "ignored" }, "webhook");
      return c.json({ received: true as const, result: "ignored" as const }, 200);
    }
    const parsed = HandledEventSchema.safeParse(event);
    if (!parsed.success) {
      throw new ApiError("validation_failed", {
        errors: parsed.error.issues.map((issue) => ({
          path: ["json", ...issue.path].map(String).join("."),
          message: issue.message,
        })),
      });
    }
    const { result, mismatch } = await applyProviderEvent(deps.db, parsed.data);
    const fields = { event_id: event.id, type: event.type, result };
    if (mismatch) deps.logger.warn({ ...fields, mismatch }, "webhook does not match our records");
    else deps.logger.info(fields, "webhook");
    return c.json({ received: true as const, result }, 200);
  });
}
