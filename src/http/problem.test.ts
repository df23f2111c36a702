import { Hono } from "hono";
import { requestId } from "hono/request-id";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../test/helpers/harness.js";
import { createErrorHandler } from "./problem.js";

describe("the error handler", () => {
  it("answers a middleware that fails after its handler with a clean problem", async () => {
    const app = new Hono<{ Variables: { requestId: string } }>();
    app.onError(createErrorHandler(silentLogger));
    app.use(requestId());
    app.use(async (_c, next) => {
      await next();
      throw new Error("commit failed");
    });
    app.post("/things", (c) => c.json({ id: "t1" }, 201, { Location: "/things/t1" }));

    const res = await app.request("/things", { method: "POST" });
    expect(res.status).toBe(500);
    expect(res.headers.get("location")).toBeNull();
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    const body = (await res.json()) as { code: string; request_id: string };
    expect(body.code).toBe("internal_error");
    expect(res.headers.get("x-request-id")).toBe(body.request_id);
  });
});
