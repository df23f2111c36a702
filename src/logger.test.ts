import { DrizzleQueryError } from "drizzle-orm/errors";
import { describe, expect, it } from "vitest";
import { serializeError } from "./logger.js";

/** A PostgreSQL error as postgres.js throws it: the SQLSTATE and, beside it, what was sent. */
function postgresError() {
  return Object.assign(new Error('invalid input syntax for type integer: "ada@example.com"'), {
    name: "PostgresError",
    code: "22P02",
    severity: "ERROR",
    routine: "pg_strtoint32_safe",
    detail: "Failing row contains (ada@example.com, SKU-1).",
    query: "insert into orders values ($1, $2)",
    parameters: ["ada@example.com", "SKU-1"],
    args: ["ada@example.com", "SKU-1"],
  });
}

describe("serializeError", () => {
  it("keeps the codes and the SQL, and drops every value a query carried", () => {
    const error = new DrizzleQueryError(
      'insert into "orders" ("email", "sku") values ($1, $2)',
      ["ada@example.com", "SKU-1"],
      postgresError(),
    );
    const serialized = serializeError(error);
    expect(serialized).toEqual({
      type: "DrizzleQueryError",
      message: 'Failed query: insert into "orders" ("email", "sku") values ($1, $2)',
      stack: expect.stringMatching(/^Error: Failed query: [^\n]*\$2\)\n {4}at /),
      cause: {
        type: "Error",
        message: 'invalid input syntax for type integer: "…"',
        code: "22P02",
        severity: "ERROR",
        routine: "pg_strtoint32_safe",
        stack: expect.any(String),
      },
    });
    expect(JSON.stringify(serialized)).not.toMatch(/ada@example|SKU-1/);
  });

  it("blanks quoted spans of any message, in the stack's first line too", () => {
    const serialized = serializeError(new Error("No such payment_method: 'pm_ada@example.com'"));
    expect(serialized.message).toBe("No such payment_method: '…'");
    expect(serialized.stack?.split("\n")[0]).toBe("Error: No such payment_method: '…'");
  });

  it("keeps the message of a PostgreSQL error that quotes names only, such as a missing database", () => {
    const error = Object.assign(new Error('database "orders_prod" does not exist'), {
      code: "3D000",
      severity: "FATAL",
    });
    expect(serializeError(error).message).toBe('database "orders_prod" does not exist');
  });

  it("names a thrown value that is not an error without showing it", () => {
    expect(serializeError({ email: "ada@example.com" })).toEqual({
      type: "object",
      message: "[a thrown non-error value]",
    });
  });
});
