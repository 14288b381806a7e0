"""The Azure OpenAI inference API (the data plane)."""
