import os
import requests

endpoint = f"{os.environ['AZURE_OPENAI_ENDPOINT']}/openai/deployments/{os.environ['AZURE_OPENAI_DEPLOYMENT']}/chat/completions"
params = {"api-version": os.getenv("AZURE_OPENAI_API_VERSION", "2024-07-01-preview")}
headers = {
    "api-key": os.environ["AZURE_OPENAI_KEY"],
    "Content-Type": "application/json"
}
payload = {
    "messages": [
        {"role": "system", "content": "You extract action items."},
        {"role": "user", "content": "Follow up with Contoso legal about the redlines."}
    ],
    "temperature": 0.4,
    "max_tokens": 300
}

response = requests.post(endpoint, params=params, headers=headers, json=payload, timeout=30)
response.raise_for_status()
print(response.json()["choices"][0]["message"]["content"])
