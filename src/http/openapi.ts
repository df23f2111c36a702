import { type RouteConfig, z } from "@hono/zod-openapi";
import { CONFIG_DEFAULTS } from "../config.js";
import { defaultStoreStatus, IDEMPOTENCY_KEY_HEADER_PATTERN } from "../idempotency/index.js";
import { ERROR_CODES, ERRORS, type ErrorCode, PROBLEM_TYPE_BASE, type Problem } from "./errors.js";
import { PROBLEM_CONTENT_TYPE } from "./problem.js";
import type { Router } from "./router.js";

type ResponseConfig = Exclude<RouteConfig["responses"][string], { $ref: string }>;
type HeadersObject = Exclude<NonNullable<ResponseConfig["headers"]>, z.ZodType>;
type HeaderObject = Exclude<HeadersObject[string], { $ref: string }>;

/** A request id as the examples show it. */
const EXAMPLE_REQUEST_ID = "5f0c3d52-8f6e-4c39-9a53-0d5e8b8f2b61";

export const ProblemSchema = z
  .object({
    type: z.url().openapi({
      description: "A URI naming the problem type; it ends in the `code`.",
      example: `${PROBLEM_TYPE_BASE}order_not_found`,
    }),
    title: z.string().openapi({
      description: "A short summary of the problem type; the same for every occurrence.",
      example: ERRORS.order_not_found.title,
    }),
    status: z.int().openapi({ description: "The HTTP status code.", example: 404 }),
    detail: z.string().openapi({
      description: "What happened in this occurrence, for humans.",
      example: ERRORS.order_not_found.detail,
    }),
    code: z.enum(ERROR_CODES).openapi({
      description:
        "Stable, machine-readable cause: branch on this, not on `title` or `detail`. Each " +
        "operation lists the codes it can answer under each status.",
    }),
    request_id: z.string().openapi({
      description: "The `X-Request-Id` of the request; quote it when asking for support.",
      example: EXAMPLE_REQUEST_ID,
    }),
    errors: z
      .array(
        z.object({
          path: z.string().openapi({
            description: "Where: `json`, `query`, `param` or `header`, then the field's path.",
            example: "json.items.0.quantity",
          }),
          message: z.string().openapi({ example: "Too small: expected number to be >=1" }),
        }),
      )
      .optional()
      .openapi({ description: "With `validation_failed`: each failing field." }),
    payment_id: z
      .string()
      .optional()
      .openapi({
        description:
          "With `payment_declined`, `payment_method_invalid`, `payment_request_invalid`, " +
          "`refund_exceeds_payment` and `refund_failed`: the payment concerned (for a decline, the failed payment's id).",
        example: "pay_01jdq3x2k8m7e9z5k2c8r4t1yb",
      }),
    provider_code: z
      .string()
      .optional()
      .openapi({
        description:
          "With `payment_request_invalid`: the payment provider's error code, such as " +
          "`amount_too_large`.",
        example: "amount_too_large",
      }),
    decline_code: z
      .string()
      .optional()
      .openapi({
        description:
          "With `payment_declined` and `refund_failed`: the provider's reason, such as " +
          "`insufficient_funds` or `generic_decline`.",
        example: "insufficient_funds",
      }),
  })
  .openapi("Problem", {
    description:
      "An RFC 9457 problem document (`application/problem+json`); `code` names the cause.",
  });

/**
 * The `Idempotency-Key` request header of every idempotent write. The idempotency middleware
 * checks it before the handler runs (missing: 400 `idempotency_key_missing`, malformed: 400
 * `idempotency_key_invalid`); this schema documents the same rule, so it is optional here and
 * marked required in the document. Route header objects may spell the key in any case; the
 * document makes it one reusable parameter, `components/parameters/IdempotencyKey`.
 */
export const IdempotencyKeyHeaderSchema = z
  .string()
  .regex(IDEMPOTENCY_KEY_HEADER_PATTERN)
  .optional()
  .openapi("IdempotencyKey", {
    param: { in: "header", required: true },
    description:
      "Makes the request safe to retry. 16-255 characters of `A-Z a-z 0-9 - _ . : ~ + / =` " +
      "(a UUID works), sent bare (as Stripe does) or as a quoted Structured Field string (as the " +
      "IETF draft does); both forms are the same key. Use a new key for every new request, and " +
      "the same key for every retry of it.\n\n" +
      "A retry with the same key and the same request (method, path, and body compared after " +
      "JSON canonicalisation) gets the stored response with `Idempotent-Replayed: true`; the " +
      "same key with a different request gets 422 `idempotency_key_reused`. Keys are scoped to " +
      `your account and kept for ${CONFIG_DEFAULTS.IDEMPOTENCY_TTL_MS / 3_600_000} hours (the ` +
      "server's `IDEMPOTENCY_TTL_MS`); after that the same key executes afresh.",
    example: "3f1c8e2a-6b7d-4c1e-9f0a-2d5b7c9e1a44",
  });

/** The request headers of an idempotent write: `headers: IdempotencyKeyHeaders`. */
export const IdempotencyKeyHeaders = z.object({ "Idempotency-Key": IdempotencyKeyHeaderSchema });

/** Reusable response headers, registered once under `components/headers`. */
const HEADER_COMPONENTS = {
  IdempotentReplayed: {
    description:
      "On a response stored under an `Idempotency-Key`: `false` on the execution that produced " +
      "it, `true` when it is the stored response replayed for a retry. Absent on rejections, " +
      "which are never stored.",
    schema: { type: "string", enum: ["true", "false"] },
    example: "false",
  },
  RetryAfter: {
    description:
      "Seconds to wait before retrying with the same `Idempotency-Key`: sent with " +
      "`idempotency_key_in_progress`, and with a 503 when the server knows when to retry.",
    schema: { type: "integer", minimum: 0 },
    example: 1,
  },
  WwwAuthenticate: {
    description: "The authentication scheme to use: `Bearer`, with `error` for a rejected key.",
    required: true,
    schema: { type: "string" },
    example: 'Bearer realm="api", error="invalid_token"',
  },
  RequestId: {
    description: "This request's id (the `request_id` of a problem); quote it in support requests.",
    required: true,
    schema: { type: "string" },
    example: EXAMPLE_REQUEST_ID,
  },
  Location: {
    description: "The URL of the created resource.",
    required: true,
    schema: { type: "string" },
    example: "/v1/orders/ord_01jdq3v6x6m7e9z5k2c8r4t1ya",
  },
} as const satisfies Record<string, HeaderObject>;

type HeaderComponent = keyof typeof HEADER_COMPONENTS;

/** A `$ref` to a shared response header. */
export function headerRef(name: HeaderComponent): { $ref: string } {
  return { $ref: `#/components/headers/${name}` };
}

/** Registers the shared response headers on the app's registry; routes `$ref` them. */
export function registerSharedComponents(registry: Router["openAPIRegistry"]): void {
  for (const [name, header] of Object.entries(HEADER_COMPONENTS)) {
    registry.registerComponent("headers", name, header);
  }
}

/** The replay marker of every response an idempotent write stores. */
export const IdempotentReplayedHeader: HeadersObject = {
  "Idempotent-Replayed": headerRef("IdempotentReplayed"),
};

/** The `Location` header of a 201 plus the replay marker, for idempotent creates. */
export const CreatedHeaders: HeadersObject = {
  Location: headerRef("Location"),
  ...IdempotentReplayedHeader,
};

/** The problem body an error code produces, as the document's examples show it. */
function problemExample(code: ErrorCode): Problem {
  return {
    type: `${PROBLEM_TYPE_BASE}${code}`,
    title: ERRORS[code].title,
    status: ERRORS[code].status,
    detail: ERRORS[code].detail,
    code,
    request_id: EXAMPLE_REQUEST_ID,
    ...(code === "validation_failed"
      ? { errors: [{ path: "json.currency", message: "is not an ISO 4217 currency code" }] }
      : {}),
  };
}

/**
 * Error responses, grouped by status, each listing exactly the codes it can carry: the schema
 * narrows `status` and `code`, there is one example per code, and the headers that come with
 * them are declared. A list holding the idempotency codes marks an idempotent write: its
 * business outcomes (404, 409 and the like from the handler) are stored and replayed, so they
 * carry `Idempotent-Replayed`.
 */
export function problemResponses(codes: readonly ErrorCode[]): Record<number, ResponseConfig> {
  const idempotent = codes.includes("idempotency_key_missing");
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) {
    const status = ERRORS[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const responses: Record<number, ResponseConfig> = {};
  for (const [status, statusCodes] of byStatus) {
    const headers: HeadersObject = {};
    if (status === 401) headers["WWW-Authenticate"] = headerRef("WwwAuthenticate");
    // A 503 may say when to come back (RFC 9110, section 10.2.3), as the in-progress 409 does.
    if (status === 503 || statusCodes.includes("idempotency_key_in_progress")) {
      headers["Retry-After"] = headerRef("RetryAfter");
    }
    if (idempotent && statusCodes.some((code) => isStoredOutcome(code))) {
      Object.assign(headers, IdempotentReplayedHeader);
    }
    responses[status] = {
      description: statusCodes
        .map((code) => `- \`${code}\` (${ERRORS[code].title}): ${ERRORS[code].detail}`)
        .join("\n"),
      ...(Object.keys(headers).length > 0 ? { headers } : {}),
      content: {
        [PROBLEM_CONTENT_TYPE]: {
          schema: ProblemSchema.extend({
            status: z.literal(status),
            code: z.enum(statusCodes as [ErrorCode, ...ErrorCode[]]),
          }),
          examples: Object.fromEntries(
            statusCodes.map((code) => [
              code,
              { summary: ERRORS[code].title, value: problemExample(code) },
            ]),
          ),
        },
      },
    };
  }
  return responses;
}

/**
 * A handler's own answer that the idempotency middleware stores, as opposed to a rejection. A
 * multi-phase request stores whatever its last phase answers, such as a provider's refusal.
 */
function isStoredOutcome(code: ErrorCode): boolean {
  return (
    !PROTOCOL_CODES.has(code) &&
    (defaultStoreStatus(ERRORS[code].status) || code === "payment_request_invalid")
  );
}

const COMMON_CODES = [
  "authentication_required",
  "api_key_invalid",
  "internal_error",
  "database_unavailable",
  "value_not_storable",
] as const;

/** Errors any read operation can answer. */
export const READ_ERRORS = [...COMMON_CODES, "validation_failed"] as const satisfies ErrorCode[];

/** Errors any idempotent write can answer before or around its own business outcome. */
export const WRITE_ERRORS = [
  ...COMMON_CODES,
  "idempotency_key_missing",
  "idempotency_key_invalid",
  "malformed_json",
  "validation_failed",
  "idempotency_key_in_progress",
  "idempotency_key_reused",
  "payload_too_large",
  "unsupported_media_type",
  "content_encoding_unsupported",
  "invalid_utf8",
  "json_too_deep",
] as const satisfies ErrorCode[];

const PROTOCOL_CODES: ReadonlySet<ErrorCode> = new Set(WRITE_ERRORS);
