import { serve } from "@hono/node-server";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { createTransfersApp } from "./app.js";
import { migrate } from "./migrate.js";

/** `DATABASE_URL=postgres://... npx tsx examples/transfers/main.ts`, then POST /transfers. */
const url = process.env.DATABASE_URL;
if (!url) throw new Error("set DATABASE_URL to a PostgreSQL database the example may use");
const client = postgres(url);
await migrate(client);
await client`INSERT INTO accounts (id, balance) VALUES ('alice', 10000), ('bob', 0)
  ON CONFLICT (id) DO NOTHING`;
const port = Number(process.env.PORT ?? 3001);
serve({ fetch: createTransfersApp(drizzle(client)).fetch, port });
console.log(`transfers example on http://127.0.0.1:${port}`);
