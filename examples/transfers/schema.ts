import { bigint, pgTable, text, timestamp } from "drizzle-orm/pg-core";

export const accounts = pgTable("accounts", {
  id: text("id").primaryKey(),
  balance: bigint("balance", { mode: "number" }).notNull(),
});

export const transfers = pgTable("transfers", {
  id: text("id").primaryKey(),
  fromAccount: text("from_account").notNull(),
  toAccount: text("to_account").notNull(),
  amount: bigint("amount", { mode: "number" }).notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});
