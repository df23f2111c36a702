import { randomUUID } from "node:crypto";
import { eq, inArray, sql } from "drizzle-orm";
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import {
  type IdempotencyDatabase,
  type IdempotencyVariables,
  idempotency,
} from "../../src/idempotency/index.js";
import { accounts, transfers } from "./schema.js";

type Env = { Variables: IdempotencyVariables };

interface TransferInput {
  from: string;
  to: string;
  amount: number;
}

function parseTransfer(body: unknown): TransferInput | undefined {
  const { from, to, amount } = (body ?? {}) as Record<string, unknown>;
  if (typeof from !== "string" || typeof to !== "string" || from === to) return undefined;
  if (typeof amount !== "number" || !Number.isSafeInteger(amount) || amount <= 0) return undefined;
  return { from, to, amount };
}

/**
 * Money moves between accounts, once per `Idempotency-Key`. The layer runs with its defaults:
 * one tenant, problem+json for its own rejections, 24 h retention, a 5 s wait for duplicates.
 */
export function createTransfersApp(db: IdempotencyDatabase) {
  const app = new Hono<Env>();
  app.onError((error, c) => {
    // The layer's own answers (400, 409, 422) arrive as HTTPExceptions carrying problem+json.
    if (error instanceof HTTPException) return error.getResponse();
    console.error(error);
    return c.json({ error: "internal_error" }, 500);
  });

  app.post("/transfers", idempotency<Env>({ db }), async (c) => {
    const input = parseTransfer(await c.req.json());
    // A 400 is not stored: the client may fix the body and retry with the same key.
    if (!input) return c.json({ error: "invalid_transfer" }, 400);
    const { tx } = c.var;
    // Both rows locked in id order, so two opposite transfers cannot deadlock.
    const rows = await tx
      .select()
      .from(accounts)
      .where(inArray(accounts.id, [input.from, input.to]))
      .orderBy(accounts.id)
      .for("update");
    const from = rows.find((row) => row.id === input.from);
    if (!from || rows.length !== 2) return c.json({ error: "account_not_found" }, 404);
    // A business answer: stored, and replayed to a retry even once the account is funded.
    if (from.balance < input.amount) {
      return c.json({ error: "insufficient_funds", balance: from.balance }, 409);
    }
    const move = (id: string, delta: number) =>
      tx
        .update(accounts)
        .set({ balance: sql`${accounts.balance} + ${delta}` })
        .where(eq(accounts.id, id));
    await move(input.from, -input.amount);
    await move(input.to, input.amount);
    const [transfer] = await tx
      .insert(transfers)
      .values({
        id: `tr_${randomUUID()}`,
        fromAccount: input.from,
        toAccount: input.to,
        amount: input.amount,
      })
      .returning();
    return c.json(transfer, 201, { Location: `/transfers/${transfer?.id}` });
  });

  app.get("/accounts/:id", async (c) => {
    const [account] = await db
      .select()
      .from(accounts)
      .where(eq(accounts.id, c.req.param("id")));
    return account ? c.json(account) : c.json({ error: "account_not_found" }, 404);
  });

  return app;
}
