"""The ARM-shaped control plane (Microsoft.CognitiveServices)."""
