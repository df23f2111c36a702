import { createClient, isApiProblem } from "../src/index.js";

const api = createClient({ baseUrl: "http://127.0.0.1:3000", apiKey: process.env.API_KEY ?? "" });
const items = [{ sku: "TSHIRT", name: "T-shirt", quantity: 2, unit_amount: 1500 }];
const { data: order } = await api.orders.create({ currency: "EUR", items });
try {
  const paid = await api.payments.create({ order_id: order.id, payment_method: "pm_card_visa" });
  console.log(paid.data.status, { replayed: paid.replayed, key: paid.idempotencyKey });
} catch (error) {
  if (!isApiProblem(error, "payment_declined")) throw error;
  console.log("declined:", error.body.decline_code);
}
