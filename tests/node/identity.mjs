// Entra tokens from Lapis through Node's @azure/identity, unmodified, fed to the npm
// `openai` AzureOpenAI client with getBearerTokenProvider: a chat and a streamed chat.
//
// CREDENTIAL picks the credential:
//   managed  new ManagedIdentityCredential()      (IDENTITY_ENDPOINT + IDENTITY_HEADER,
//   default  new DefaultAzureCredential()          or AZURE_POD_IDENTITY_AUTHORITY_HOST: IMDS)
//   secret   new ClientSecretCredential(TENANT, APP_ID, SECRET,
//              { authorityHost: AUTHORITY, disableInstanceDiscovery: true })   (https only)
// ENDPOINT is the account's endpoint. Prints ONE JSON object on stdout; a failure
// prints {"error": ...} and exits 1.
//
// Run: CREDENTIAL=managed ENDPOINT=... node identity.mjs  (tests/integration/test_node_identity.py does it)

import {
  ClientSecretCredential,
  DefaultAzureCredential,
  ManagedIdentityCredential,
  getBearerTokenProvider,
} from "@azure/identity";
import { AzureOpenAI } from "openai";

const scope = "https://cognitiveservices.azure.com/.default";
const messages = [{ role: "user", content: "Taxi from the airport, 42 dollars, client visit." }];

function credential() {
  switch (process.env.CREDENTIAL) {
    case "managed":
      return new ManagedIdentityCredential();
    case "default":
      return new DefaultAzureCredential();
    case "secret":
      return new ClientSecretCredential(process.env.TENANT, process.env.APP_ID, process.env.SECRET, {
        authorityHost: process.env.AUTHORITY,
        disableInstanceDiscovery: true,
      });
    default:
      throw new Error(`CREDENTIAL must be managed, default or secret, not ${process.env.CREDENTIAL}`);
  }
}

try {
  const cred = credential();
  const token = await cred.getToken(scope);
  const azureADTokenProvider = getBearerTokenProvider(cred, scope);
  const client = new AzureOpenAI({
    azureADTokenProvider,
    endpoint: process.env.ENDPOINT,
    apiVersion: "2024-10-21",
    deployment: "gpt-4o-mini",
    maxRetries: 0,
  });
  const chat = await client.chat.completions.create({ model: "gpt-4o-mini", messages });
  const stream = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let usage = null;
  for await (const chunk of stream) {
    text += chunk.choices?.[0]?.delta?.content ?? "";
    if (chunk.usage) usage = chunk.usage.total_tokens;
  }
  const [, payload] = token.token.split(".");
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString());
  console.log(JSON.stringify({
    aud: claims.aud,
    oid: claims.oid,
    expiresOnTimestamp: token.expiresOnTimestamp,
    chat: chat.choices[0].message.content,
    stream: text,
    usage,
  }));
} catch (err) {
  console.log(JSON.stringify({ error: String(err?.stack ?? err), name: err?.constructor?.name ?? null }));
  process.exit(1);
}
