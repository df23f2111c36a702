import { existsSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Config } from "../config.js";
import type { Database } from "../db/client.js";
import { newApiKey } from "../ids.js";
import { ensureTenantWithKey } from "./tenants.queries.js";

export const DEMO_TENANT_NAME = "demo";

/**
 * The `demo` tenant a new user tries the API with. Its key is `DEMO_API_KEY` when set; on the
 * embedded database without it, a key generated once and kept in `DATA_DIR/demo-api-key`, so
 * restarts print the same key. With `DATABASE_URL` and no `DEMO_API_KEY` there is no demo tenant.
 *
 * @returns the demo API key, or undefined when there is none
 */
export async function ensureDemoTenant(
  db: Database,
  config: Pick<Config, "DEMO_API_KEY" | "DATABASE_URL" | "DATA_DIR">,
): Promise<string | undefined> {
  let apiKey = config.DEMO_API_KEY;
  if (!apiKey && !config.DATABASE_URL) {
    const keyFile = join(config.DATA_DIR, "demo-api-key");
    if (existsSync(keyFile)) {
      apiKey = readFileSync(keyFile, "utf8").trim();
    } else {
      apiKey = newApiKey();
      await mkdir(config.DATA_DIR, { recursive: true });
      await writeFile(keyFile, `${apiKey}\n`, { mode: 0o600 });
    }
  }
  if (!apiKey) return undefined;
  await ensureTenantWithKey(db, { name: DEMO_TENANT_NAME, apiKey });
  return apiKey;
}
