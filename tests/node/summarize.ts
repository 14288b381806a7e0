import fetch from "node-fetch";

const endpoint = `${process.env.AZURE_OPENAI_ENDPOINT}/openai/deployments/${process.env.AZURE_OPENAI_DEPLOYMENT}/chat/completions?api-version=${process.env.AZURE_OPENAI_API_VERSION ?? "2024-07-01-preview"}`;

export async function summarize(text: string) {
  const response = await fetch(endpoint, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "api-key": process.env.AZURE_OPENAI_KEY ?? ""
    },
    body: JSON.stringify({
      messages: [
        { role: "system", content: "You summarize expense notes." },
        { role: "user", content: text }
      ],
      temperature: 0.3,
      max_tokens: 400
    })
  });

  if (!response.ok) {
    throw new Error(`Azure OpenAI error ${response.status}: ${await response.text()}`);
  }

  const body = await response.json();
  return body.choices?.[0]?.message?.content ?? "";
}

// ---------------------------------------------------------------------------
// Test driver (not part of the setup guide). Everything above this line is the
// Step 4 snippet of the setup guide (azure-openai-setup.md) copied verbatim;
// do not edit it.
// Run: npx tsx summarize.ts "text to summarize"
// ---------------------------------------------------------------------------
const out = await summarize(process.argv[2] ?? "Taxi from the airport, 42 EUR, client visit to Contoso.");
console.log(JSON.stringify({ content: out }));
