/** How a test card's charge ends when it is declined. */
export interface CardDecline {
  /** The error `code`: `card_declined` for most declines. */
  code: string;
  /** The issuer's reason, `decline_code` on the error and `outcome.reason` on the charge. */
  declineCode: string;
  message: string;
}

/** A test PaymentMethod from Stripe's testing docs and what charging it does. */
export interface TestCard {
  brand: "visa" | "mastercard" | "amex";
  last4: string;
  funding: "credit" | "debit";
  country: string;
  /** Present when every charge on this card is declined. */
  decline?: CardDecline;
}

const GENERIC_DECLINE_MESSAGE = "Your card was declined.";

function declined(last4: string, decline: CardDecline): TestCard {
  return { brand: "visa", last4, funding: "credit", country: "US", decline };
}

/**
 * The test PaymentMethods the simulator knows, named as in https://docs.stripe.com/testing.
 * Any other `payment_method` is answered with `resource_missing`, as Stripe does.
 */
export const TEST_CARDS: ReadonlyMap<string, TestCard> = new Map<string, TestCard>([
  ["pm_card_visa", { brand: "visa", last4: "4242", funding: "credit", country: "US" }],
  ["pm_card_visa_debit", { brand: "visa", last4: "5556", funding: "debit", country: "US" }],
  ["pm_card_mastercard", { brand: "mastercard", last4: "4444", funding: "credit", country: "US" }],
  ["pm_card_amex", { brand: "amex", last4: "8431", funding: "credit", country: "US" }],
  [
    "pm_card_chargeDeclined",
    declined("0002", {
      code: "card_declined",
      declineCode: "generic_decline",
      message: GENERIC_DECLINE_MESSAGE,
    }),
  ],
  [
    "pm_card_chargeDeclinedInsufficientFunds",
    declined("9995", {
      code: "card_declined",
      declineCode: "insufficient_funds",
      message: "Your card has insufficient funds.",
    }),
  ],
  [
    "pm_card_chargeDeclinedLostCard",
    declined("9987", {
      code: "card_declined",
      declineCode: "lost_card",
      message: GENERIC_DECLINE_MESSAGE,
    }),
  ],
  [
    "pm_card_chargeDeclinedStolenCard",
    declined("9979", {
      code: "card_declined",
      declineCode: "stolen_card",
      message: GENERIC_DECLINE_MESSAGE,
    }),
  ],
  [
    "pm_card_chargeDeclinedFraudulent",
    declined("0019", {
      code: "card_declined",
      declineCode: "fraudulent",
      message: GENERIC_DECLINE_MESSAGE,
    }),
  ],
  [
    "pm_card_chargeDeclinedExpiredCard",
    declined("0069", {
      code: "expired_card",
      declineCode: "expired_card",
      message: "Your card has expired.",
    }),
  ],
  [
    "pm_card_chargeDeclinedIncorrectCvc",
    declined("0127", {
      code: "incorrect_cvc",
      declineCode: "incorrect_cvc",
      message: "Your card's security code is incorrect.",
    }),
  ],
  [
    "pm_card_chargeDeclinedProcessingError",
    declined("0119", {
      code: "processing_error",
      declineCode: "processing_error",
      message: "An error occurred while processing your card. Try again in a little bit.",
    }),
  ],
]);
