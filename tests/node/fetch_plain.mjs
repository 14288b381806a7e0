// Node's global fetch with a string body and NO Content-Type header: Node then
// sends `content-type: text/plain;charset=UTF-8`. Azure (and so Lapis) must still
// parse the body as JSON and take the deployment from the path (no "model").
//
// Prints ONE JSON object on stdout: {status, content_type_sent, response_content_type, content, body}.
// Run: node fetch_plain.mjs

const endpoint = process.env.AZURE_OPENAI_ENDPOINT;
const deployment = process.env.AZURE_OPENAI_DEPLOYMENT;
const apiVersion = process.env.AZURE_OPENAI_API_VERSION ?? "2024-07-01-preview";
const url = `${endpoint}/openai/deployments/${deployment}/chat/completions?api-version=${apiVersion}`;

const messages = [
  { role: "system", content: "You summarize expense notes." },
  { role: "user", content: "Train ticket Paris-Lyon, 78 EUR, for the Fabrikam workshop." },
];

const request = new Request(url, {
  method: "POST",
  headers: { "api-key": process.env.AZURE_OPENAI_KEY ?? "" },
  body: JSON.stringify({ messages }),
});
const contentTypeSent = request.headers.get("content-type");

const response = await fetch(request);
const text = await response.text();
let body = null;
try {
  body = JSON.parse(text);
} catch {
  body = text;
}

console.log(
  JSON.stringify({
    status: response.status,
    content_type_sent: contentTypeSent,
    response_content_type: response.headers.get("content-type"),
    content: body?.choices?.[0]?.message?.content ?? null,
    body,
  }),
);
