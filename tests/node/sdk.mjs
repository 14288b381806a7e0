// Drives Lapis with the npm `openai` SDK, unmodified, the way an Azure user would.
//
// Reads AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_KEY, AZURE_OPENAI_DEPLOYMENT and
// AZURE_OPENAI_API_VERSION (OPENAI_BASE_URL must be unset: AzureOpenAI refuses
// `endpoint` when it is set). Prints ONE JSON object on stdout; every section
// catches its own error so a failure in one does not hide the others.
//
// Run: node sdk.mjs   (tests/integration/test_node_clients.py does it)

import OpenAI, { AzureOpenAI, NotFoundError } from "openai";

const endpoint = process.env.AZURE_OPENAI_ENDPOINT;
const apiKey = process.env.AZURE_OPENAI_KEY;
const apiVersion = process.env.AZURE_OPENAI_API_VERSION;
const deployment = process.env.AZURE_OPENAI_DEPLOYMENT ?? "gpt-4o-mini";
const embeddingDeployment = process.env.AZURE_OPENAI_EMBEDDING_DEPLOYMENT ?? "text-embedding-3-small";

const messages = [
  { role: "system", content: "You summarize expense notes." },
  { role: "user", content: "Dinner with the Contoso team, 3 people, 96 EUR, receipt attached." },
];

// What went over the wire for embeddings: the request's encoding_format and the
// JSON type of data[0].embedding in the response (before the SDK decodes it).
const wire = {};
async function recordingFetch(url, init) {
  const response = await fetch(url, init);
  if (String(url).includes("/embeddings")) {
    try {
      wire.request_url = String(url);
      wire.request_encoding_format = JSON.parse(init.body).encoding_format ?? null;
      const body = await response.clone().json();
      const first = body?.data?.[0]?.embedding;
      wire.response_embedding_type = Array.isArray(first) ? "array" : typeof first;
    } catch (err) {
      wire.error = String(err);
    }
  }
  return response;
}

function describeError(err) {
  return {
    error: String(err?.stack ?? err),
    name: err?.constructor?.name ?? null,
    status: err?.status ?? null,
    code: err?.code ?? null,
  };
}

async function section(fn) {
  try {
    return await fn();
  } catch (err) {
    return describeError(err);
  }
}

const azure = new AzureOpenAI({ endpoint, apiKey, apiVersion, fetch: recordingFetch });
const result = {
  sdk_version: (await import("openai/version")).VERSION,
  node_version: process.version,
};

// (1) Non-streaming chat completion.
result.chat = await section(async () => {
  const c = await azure.chat.completions.create({ model: deployment, messages, max_tokens: 200 });
  return {
    id: c.id,
    object: c.object,
    model: c.model,
    created: c.created,
    n_choices: c.choices.length,
    finish_reason: c.choices[0]?.finish_reason ?? null,
    role: c.choices[0]?.message?.role ?? null,
    content: c.choices[0]?.message?.content ?? null,
    usage: c.usage ?? null,
  };
});

// (2) Streaming chat with the usage chunk, read chunk by chunk ...
result.stream = await section(async () => {
  const stream = await azure.chat.completions.create({
    model: deployment,
    messages,
    max_tokens: 200,
    stream: true,
    stream_options: { include_usage: true },
  });
  const deltas = [];
  const ids = new Set();
  const objects = new Set();
  let finishReason = null;
  let usage = null;
  let usageChunkChoices = null;
  let chunks = 0;
  let filterChunks = 0;
  let filterChunkFirst = null;
  for await (const chunk of stream) {
    chunks += 1;
    // Azure opens the stream with a content-filter chunk: id "", object "", choices [],
    // prompt_filter_results. Count it apart from the real chunks.
    if (chunk.object === "" && (chunk.choices ?? []).length === 0 && chunk.prompt_filter_results) {
      filterChunks += 1;
      filterChunkFirst ??= chunks === 1;
      continue;
    }
    ids.add(chunk.id);
    objects.add(chunk.object);
    for (const choice of chunk.choices ?? []) {
      if (typeof choice.delta?.content === "string") deltas.push(choice.delta.content);
      if (choice.finish_reason) finishReason = choice.finish_reason;
    }
    if (chunk.usage) {
      usage = chunk.usage;
      usageChunkChoices = (chunk.choices ?? []).length;
    }
  }
  return {
    chunks,
    filter_chunks: filterChunks,
    filter_chunk_first: filterChunkFirst,
    deltas,
    content: deltas.join(""),
    ids: [...ids],
    objects: [...objects],
    finish_reason: finishReason,
    usage,
    usage_chunk_choices: usageChunkChoices,
  };
});

// ... and through the SDK's accumulating helper, which rebuilds the message from
// the deltas itself (it must agree with the deltas it saw).
result.stream_helper = await section(async () => {
  const deltas = [];
  const runner = azure.chat.completions.stream({
    model: deployment,
    messages,
    max_tokens: 200,
    stream_options: { include_usage: true },
  });
  runner.on("content", (delta) => deltas.push(delta));
  const final = await runner.finalChatCompletion();
  return {
    deltas_joined: deltas.join(""),
    content: final.choices[0]?.message?.content ?? null,
    finish_reason: final.choices[0]?.finish_reason ?? null,
    usage: final.usage ?? null,
  };
});

// (3) Embeddings without encoding_format: the SDK asks for base64 and decodes it.
result.embeddings = await section(async () => {
  const e = await azure.embeddings.create({ model: embeddingDeployment, input: ["hotel invoice, 2 nights"] });
  const vector = e.data[0].embedding;
  let sumSquares = 0;
  let allZero = true;
  let allFinite = true;
  for (const x of vector) {
    sumSquares += x * x;
    if (x !== 0) allZero = false;
    if (!Number.isFinite(x)) allFinite = false;
  }
  return {
    object: e.object,
    model: e.model,
    n_data: e.data.length,
    is_array: Array.isArray(vector),
    length: vector.length,
    norm: Math.sqrt(sumSquares),
    all_zero: allZero,
    all_finite: allFinite,
    head: Array.from(vector.slice(0, 4)),
    usage: e.usage ?? null,
    wire,
  };
});

// (4) Unknown deployment: the SDK must raise NotFoundError (404, DeploymentNotFound).
result.not_found = await section(async () => {
  try {
    await azure.chat.completions.create({ model: "no-such-deployment-xyz", messages, max_tokens: 5 });
    return { raised: false };
  } catch (err) {
    return {
      raised: true,
      is_not_found_error: err instanceof NotFoundError,
      name: err?.constructor?.name ?? null,
      status: err?.status ?? null,
      code: err?.code ?? null,
      message: err?.message ?? null,
    };
  }
});

// (5) The plain OpenAI client on the /openai/v1/ surface, model = deployment name.
result.v1 = await section(async () => {
  const client = new OpenAI({ baseURL: `${endpoint}/openai/v1/`, apiKey });
  const c = await client.chat.completions.create({ model: deployment, messages, max_tokens: 200 });
  return {
    id: c.id,
    object: c.object,
    model: c.model,
    finish_reason: c.choices[0]?.finish_reason ?? null,
    content: c.choices[0]?.message?.content ?? null,
    usage: c.usage ?? null,
  };
});

console.log(JSON.stringify(result));
