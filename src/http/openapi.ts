import { type RouteConfig, z } from "@hono/zod-openapi";
import { IDEMPOTENCY_KEY_PATTERN } from "../idempotency/key.js";
import { ERROR_CODES, ERRORS, type ErrorCode, PROBLEM_TYPE_BASE } from "./errors.js";
import { PROBLEM_CONTENT_TYPE } from "./problem.js";

type ResponseConfig = Exclude<RouteConfig["responses"][string], { $ref: string }>;
type HeadersObject = Exclude<NonNullable<ResponseConfig["headers"]>, z.ZodType>;

export const ProblemSchema = z
  .object({
    type: z.url().openapi({ example: `${PROBLEM_TYPE_BASE}order_not_found` }),
    title: z.string().openapi({ example: "Order not found" }),
    status: z.int().openapi({ example: 404 }),
    detail: z.string().openapi({ example: ERRORS.order_not_found.detail }),
    code: z.enum(ERROR_CODES).openapi({ description: "Stable, machine-readable cause." }),
    request_id: z.string().openapi({ description: "The `X-Request-Id` of the request." }),
    errors: z
      .array(z.object({ path: z.string(), message: z.string() }))
      .optional()
      .openapi({ description: "With `validation_failed`: each failing field." }),
  })
  .openapi("Problem", {
    description: "An RFC 9457 problem document; `code` names the cause.",
  });

export const IdempotencyKeyHeaderSchema = z
  .string()
  .regex(IDEMPOTENCY_KEY_PATTERN)
  .optional()
  .openapi({
    param: { name: "idempotency-key", in: "header", required: true },
    description:
      "Makes the request safe to retry: 16-255 characters of `A-Z a-z 0-9 - _ . : ~ + / =` " +
      "(a UUID works), sent bare or as a quoted Structured Field string. Retries with the same " +
      "key and the same request get the stored response.",
    example: "3f1c8e2a-6b7d-4c1e-9f0a-2d5b7c9e1a44",
  });

export const IdempotentReplayedHeader: HeadersObject = {
  "Idempotent-Replayed": {
    description: "`true` when this is the stored response of an earlier execution.",
    schema: { type: "string", enum: ["true", "false"] },
  },
};

const RETRY_AFTER_HEADER: HeadersObject = {
  "Retry-After": {
    description: "With `idempotency_key_in_progress`: seconds to wait before retrying.",
    schema: { type: "integer" },
  },
};

/** Error responses, grouped by status, each listing exactly the codes it can carry. */
export function problemResponses(codes: readonly ErrorCode[]): Record<number, ResponseConfig> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) {
    const status = ERRORS[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const responses: Record<number, ResponseConfig> = {};
  for (const [status, statusCodes] of byStatus) {
    responses[status] = {
      description: statusCodes.map((code) => `\`${code}\`: ${ERRORS[code].title}`).join("; "),
      ...(statusCodes.includes("idempotency_key_in_progress")
        ? { headers: RETRY_AFTER_HEADER }
        : {}),
      content: {
        [PROBLEM_CONTENT_TYPE]: {
          schema: ProblemSchema.extend({
            code: z.enum(statusCodes as [ErrorCode, ...ErrorCode[]]),
          }),
        },
      },
    };
  }
  return responses;
}

const COMMON_CODES = ["authentication_required", "api_key_invalid", "internal_error"] as const;

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
] as const satisfies ErrorCode[];
