"""api-version values Lapis serves (§1.3, §1.4 of the wire reference).

Legacy routes (/openai/deployments/...) need one of these: missing -> 404
"Resource not found"; present but unknown -> 400 "API version not supported".
The v1 routes (/openai/v1/...) take none, or v1 / preview / latest.
"""

from __future__ import annotations

GA = frozenset({"2022-12-01", "2023-05-15", "2024-02-01", "2024-06-01", "2024-10-21"})

PREVIEW = frozenset({
    "2022-03-01-preview", "2022-06-01-preview", "2023-03-15-preview", "2023-06-01-preview",
    "2023-07-01-preview", "2023-08-01-preview", "2023-09-01-preview", "2023-10-01-preview",
    "2023-12-01-preview", "2024-02-15-preview", "2024-03-01-preview", "2024-04-01-preview",
    "2024-05-01-preview", "2024-07-01-preview", "2024-08-01-preview", "2024-09-01-preview",
    "2024-10-01-preview", "2024-12-01-preview", "2025-01-01-preview", "2025-02-01-preview",
    "2025-03-01-preview", "2025-04-01-preview",
})

KNOWN = GA | PREVIEW

# Sources disagree on the v1 values (spec: v1, preview; older docs and
# openai-python: latest, preview): accept all three.
V1 = frozenset({"v1", "preview", "latest"})

LATEST_GA = "2024-10-21"
