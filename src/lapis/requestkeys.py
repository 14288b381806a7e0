"""Typed keys for what a request carries between middleware and handlers."""

from aiohttp import web

REQUEST_ID = web.RequestKey("request_id", str)
REGION = web.RequestKey("region", str)  # display name, for x-ms-region
DEPLOYMENT = web.RequestKey("deployment", str)  # for x-ms-deployment-name
