import { createHash } from "node:crypto";
import { eq } from "drizzle-orm";
import type { Executor } from "../db/client.js";
import { type Tenant, tenants } from "../db/schema.js";
import { newApiKey, newId } from "../ids.js";

/** API keys are stored as SHA-256 hashes; the plain key exists only in the creator's hands. */
export function hashApiKey(apiKey: string): string {
  return createHash("sha256").update(apiKey).digest("hex");
}

/** Creates a tenant and returns it with its API key, which is not stored and not shown again. */
export async function createTenant(
  executor: Executor,
  params: { name: string; apiKey?: string },
): Promise<{ tenant: Tenant; apiKey: string }> {
  const apiKey = params.apiKey ?? newApiKey();
  const [tenant] = await executor
    .insert(tenants)
    .values({ id: newId("ten"), name: params.name, apiKeyHash: hashApiKey(apiKey) })
    .returning();
  if (!tenant) throw new Error("tenant insert returned no row");
  return { tenant, apiKey };
}

export async function findTenantByApiKey(
  executor: Executor,
  apiKey: string,
): Promise<Tenant | undefined> {
  const [tenant] = await executor
    .select()
    .from(tenants)
    .where(eq(tenants.apiKeyHash, hashApiKey(apiKey)))
    .limit(1);
  return tenant;
}

/**
 * Makes sure a tenant with this name owns this API key (the embedded default's `demo` tenant
 * with `DEMO_API_KEY`). Idempotent: run at every start, by any number of processes at once.
 */
export async function ensureTenantWithKey(
  executor: Executor,
  params: { name: string; apiKey: string },
): Promise<Tenant> {
  await executor
    .insert(tenants)
    .values({ id: newId("ten"), name: params.name, apiKeyHash: hashApiKey(params.apiKey) })
    .onConflictDoNothing({ target: tenants.apiKeyHash });
  const tenant = await findTenantByApiKey(executor, params.apiKey);
  if (!tenant) throw new Error(`tenant ${params.name} vanished after insert`);
  return tenant;
}
