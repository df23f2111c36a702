import type { Params } from "./params.js";
import type { SimStore } from "./state.js";
import type { EventPayload } from "./webhooks.js";

/** What an operation may touch while it executes one API request. */
export interface OperationContext {
  store: SimStore;
  requestId: string;
  idempotencyKey: string | null;
  /** Unix seconds, the `created` of every object this request makes. */
  now: number;
  /** Records an event (delivered later, never inside the request). */
  emit(payload: EventPayload): void;
}

/**
 * A mutating endpoint in two phases, mirroring Stripe's idempotency rules:
 *
 * - `validate` checks the parameters and touches nothing. An error thrown here is *not*
 *   stored under the idempotency key (Stripe: "no idempotent result is saved if incoming
 *   parameters failed validation"), so the client may fix the request and reuse the key.
 * - `execute` performs the effect and returns the response object. Whatever it answers,
 *   including a 4xx `StripeSimError` such as a card decline, is stored and replayed.
 */
export interface PostOperation<Input> {
  validate(params: Params): Input;
  execute(input: Input, context: OperationContext): unknown;
}
