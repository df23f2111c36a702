import type { components, operations } from "./generated/api.js";

/**
 * Request, response and error types, each derived from the types generated from openapi.yaml,
 * so a change to the document changes them (and `npm run client:check` catches a stale copy).
 */
type Schemas = components["schemas"];

export type Order = Schemas["Order"];
export type OrderList = Schemas["OrderList"];
export type Payment = Schemas["Payment"];
export type Refund = Schemas["Refund"];
export type CreateOrderRequest = Schemas["CreateOrderRequest"];
export type CreatePaymentRequest = Schemas["CreatePaymentRequest"];
export type CreateRefundRequest = Schemas["CreateRefundRequest"];
export type ListOrdersQuery = NonNullable<operations["listOrders"]["parameters"]["query"]>;

/** The problem+json body (RFC 9457) of every error answer. */
export type Problem = Schemas["Problem"];

/** Every error code the API documents. */
export type ProblemCode = Problem["code"];

/** A problem body whose `code` is one of `C`. */
export type ProblemOf<C extends ProblemCode> = Problem & { code: C };

/** The operations this client calls, by their `operationId`. */
export type OperationId =
  | "createOrder"
  | "getOrder"
  | "listOrders"
  | "cancelOrder"
  | "createPayment"
  | "getPayment"
  | "createRefund"
  | "getRefund";

type ProblemBodies<R> = {
  [S in keyof R]: R[S] extends { content: { "application/problem+json": infer B } } ? B : never;
}[keyof R];

/**
 * The codes one operation documents, under any status: `ProblemCodeOf<"createPayment">`
 * includes `payment_declined`, `ProblemCodeOf<"getOrder">` does not.
 */
export type ProblemCodeOf<Op extends OperationId> =
  ProblemBodies<operations[Op]["responses"]> extends { code: infer C }
    ? Extract<C, ProblemCode>
    : never;

/** What every successful call resolves to. */
export interface ApiResult<T> {
  /** The parsed JSON body. */
  data: T;
  /** The HTTP status, such as 200 or 201. */
  status: number;
  /**
   * True when the server answered with the stored response of an earlier execution of the same
   * idempotency key (`Idempotent-Replayed: true`), for example because an earlier attempt's
   * answer was lost on the way. Always false for reads.
   */
  replayed: boolean;
  /** The `X-Request-Id` of the answering request; quote it in support requests. */
  requestId: string;
  /** How many HTTP requests the call took, 1 when the first one answered. */
  attempts: number;
}

/** What a write resolves to: also the key it was sent with, on every attempt. */
export interface WriteResult<T> extends ApiResult<T> {
  idempotencyKey: string;
}
