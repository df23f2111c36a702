import Stripe from "stripe";

export interface StripeProviderConfig {
  secretKey: string;
  /** A Stripe-compatible API (the local simulator); unset means Stripe itself. */
  apiUrl?: string;
  webhookSecret: string;
  /** Per provider call, in milliseconds. */
  timeoutMs: number;
  /** Retries the SDK makes itself, with the same idempotency key, on network errors and 5xx. */
  maxNetworkRetries: number;
}

/** What became of a charge. `unknown` means the provider may or may not have charged. */
export type ChargeOutcome =
  | { kind: "succeeded"; intentId: string }
  | { kind: "declined"; intentId: string | null; code: string; message: string }
  /**
   * The provider refused a parameter and charged nothing: the payment method (`param` is
   * `payment_method`) or another one, such as an amount above its limit (`amount_too_large`).
   * Not a decline: no card was asked.
   */
  | { kind: "invalid"; param: string | null; code: string; message: string }
  | { kind: "unknown"; reason: string };

/** What became of a refund. `unknown` means the provider may or may not have refunded. */
export type RefundOutcome =
  | { kind: "succeeded"; refundId: string }
  | { kind: "pending"; refundId: string }
  | { kind: "rejected"; code: string; message: string }
  | { kind: "unknown"; reason: string };

/**
 * The payment provider as the payment flows see it. Every call carries an idempotency key
 * derived from our own record, so calling again after an unknown outcome is always safe: the
 * provider answers with the object of the first call instead of charging twice.
 */
export interface PaymentProvider {
  charge(params: {
    amount: number;
    currency: string;
    paymentMethod: string;
    metadata: Record<string, string>;
    idempotencyKey: string;
  }): Promise<ChargeOutcome>;
  refund(params: {
    paymentIntentId: string;
    amount: number;
    metadata: Record<string, string>;
    idempotencyKey: string;
  }): Promise<RefundOutcome>;
  /** Parses a webhook payload after checking its `Stripe-Signature`; throws if it does not match. */
  verifyWebhook(payload: string, signature: string | undefined): Promise<Stripe.Event>;
}

export function createStripeClient(config: StripeProviderConfig): Stripe {
  const options: Stripe.StripeConfig = {
    timeout: config.timeoutMs,
    maxNetworkRetries: config.maxNetworkRetries,
    telemetry: false,
    appInfo: { name: "idempotent-payments" },
  };
  if (config.apiUrl) {
    const url = new URL(config.apiUrl);
    const protocol = url.protocol === "https:" ? "https" : "http";
    options.protocol = protocol;
    options.host = url.hostname;
    options.port = Number(url.port || (protocol === "https" ? 443 : 80));
  }
  return new Stripe(config.secretKey, options);
}

/** The provider on Stripe's API (or the simulator, which speaks it), through the official SDK. */
export function stripeProvider(config: StripeProviderConfig): PaymentProvider {
  const stripe = createStripeClient(config);
  return {
    async charge(params) {
      try {
        const intent = await stripe.paymentIntents.create(
          {
            amount: params.amount,
            currency: params.currency.toLowerCase(),
            payment_method: params.paymentMethod,
            confirm: true,
            // Cards only: redirect-based methods would need a return URL this API has no use for.
            automatic_payment_methods: { enabled: true, allow_redirects: "never" },
            metadata: params.metadata,
          },
          { idempotencyKey: params.idempotencyKey },
        );
        switch (intent.status) {
          case "succeeded":
            return { kind: "succeeded", intentId: intent.id };
          case "requires_payment_method":
          case "canceled":
            return {
              kind: "declined",
              intentId: intent.id,
              code: intent.last_payment_error?.decline_code ?? intent.status,
              message: intent.last_payment_error?.message ?? `payment intent ${intent.status}`,
            };
          case "requires_action":
            return {
              kind: "declined",
              intentId: intent.id,
              code: "authentication_required",
              message: "The card requires authentication, which this API does not support.",
            };
          default:
            // `processing`: the outcome arrives later, by webhook or a later call.
            return { kind: "unknown", reason: `payment intent ${intent.status}` };
        }
      } catch (error) {
        if (error instanceof Stripe.errors.StripeCardError) {
          const intent = (error.raw as { payment_intent?: { id?: string } }).payment_intent;
          return {
            kind: "declined",
            intentId: intent?.id ?? null,
            code: error.decline_code ?? error.code ?? "card_declined",
            message: error.message,
          };
        }
        // A 4xx means the provider refused the request and charged nothing.
        if (error instanceof Stripe.errors.StripeInvalidRequestError) {
          return {
            kind: "invalid",
            param: error.param ?? null,
            code: error.code ?? "invalid_request",
            message: error.message,
          };
        }
        return { kind: "unknown", reason: describe(error) };
      }
    },

    async refund(params) {
      try {
        const refund = await stripe.refunds.create(
          {
            payment_intent: params.paymentIntentId,
            amount: params.amount,
            metadata: params.metadata,
          },
          { idempotencyKey: params.idempotencyKey },
        );
        switch (refund.status) {
          case "succeeded":
            return { kind: "succeeded", refundId: refund.id };
          case "failed":
          case "canceled":
            return {
              kind: "rejected",
              code: refund.failure_reason ?? refund.status,
              message: `refund ${refund.status}`,
            };
          default:
            return { kind: "pending", refundId: refund.id };
        }
      } catch (error) {
        if (error instanceof Stripe.errors.StripeInvalidRequestError) {
          return {
            kind: "rejected",
            code: error.code ?? "invalid_request",
            message: error.message,
          };
        }
        return { kind: "unknown", reason: describe(error) };
      }
    },

    async verifyWebhook(payload, signature) {
      const event = await stripe.webhooks.constructEventAsync(
        payload,
        signature ?? "",
        config.webhookSecret,
        WEBHOOK_TOLERANCE_S,
      );
      // The SDK only refuses timestamps too far in the past; one too far ahead is as suspect.
      const timestamp = signedTimestamp(signature ?? "");
      if (timestamp === null || timestamp > Date.now() / 1000 + WEBHOOK_TOLERANCE_S) {
        throw new Error("webhook signature timestamp is outside the tolerance");
      }
      return event;
    },
  };
}

/** How far, in seconds, a webhook's signed timestamp may be from now, either way. */
export const WEBHOOK_TOLERANCE_S = 300;

/** The `t=` timestamp of a `Stripe-Signature` header, in Unix seconds; null if it has none. */
function signedTimestamp(header: string): number | null {
  for (const element of header.split(",")) {
    const [name, value] = element.trim().split("=", 2);
    if (name === "t" && value !== undefined && /^\d+$/.test(value)) return Number(value);
  }
  return null;
}

function describe(error: unknown): string {
  if (error instanceof Stripe.errors.StripeError) {
    return `${error.type}${error.statusCode ? ` ${error.statusCode}` : ""}: ${error.message}`;
  }
  return error instanceof Error ? error.message : String(error);
}
