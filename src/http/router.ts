import { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "./env.js";
import { ApiError } from "./errors.js";

/**
 * Every router of the app comes from here, so every route validates the same way: a request
 * that fails its schema is a 400 `validation_failed` problem listing each failing field.
 */
export function createRouter() {
  return new OpenAPIHono<AppEnv>({
    strict: true,
    defaultHook(result) {
      if (result.success) return;
      throw new ApiError("validation_failed", {
        errors: result.error.issues.map((issue) => ({
          path: [result.target, ...issue.path].map(String).join("."),
          message: issue.message,
        })),
      });
    },
  });
}

export type Router = ReturnType<typeof createRouter>;
