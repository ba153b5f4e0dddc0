// Receive intuned-relay webhooks and verify them with the Standard Webhooks library.
//
//   npm ci            (package.json and package-lock.json pin standardwebhooks)
//   RELAY_SIGNING_SECRET=whsec_... PORT=8000 node receiver.mjs
import http from "node:http";
import { Webhook } from "standardwebhooks";

// The secret from GET /v1/signing-secret (whsec_...).
const webhook = new Webhook(process.env.RELAY_SIGNING_SECRET);
const handled = new Set(); // keep this in your database: webhook-ids already acted on

http
  .createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      // Verify the raw body, before any JSON parsing.
      const body = Buffer.concat(chunks).toString("utf8");
      let event;
      try {
        event = webhook.verify(body, req.headers);
      } catch (err) {
        console.log(`refused: ${err.message}`);
        res.writeHead(400).end();
        return;
      }
      const webhookId = req.headers["webhook-id"];
      if (!handled.has(webhookId)) {
        // at least once: the same event may come again
        handled.add(webhookId);
        const data = event.data;
        console.log(
          `verified ${event.type} run ${data.runId} webhook-id ${webhookId}` +
            ` metadata ${JSON.stringify(data.metadata)}`,
        );
      }
      res.writeHead(204).end(); // any 2xx: delivered
    });
  })
  .listen(Number(process.env.PORT || 8000), "127.0.0.1");
