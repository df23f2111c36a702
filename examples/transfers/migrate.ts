import { readFile } from "node:fs/promises";
import type postgres from "postgres";

const MIGRATIONS = [
  new URL("../../src/idempotency/migration.sql", import.meta.url),
  new URL("./migration.sql", import.meta.url),
];

/** Applies the layer's migration, then the example's own, in one transaction. */
export async function migrate(client: postgres.Sql): Promise<void> {
  const files = await Promise.all(MIGRATIONS.map((url) => readFile(url, "utf8")));
  await client.begin(async (tx) => {
    for (const file of files) await tx.unsafe(file).simple();
  });
}
