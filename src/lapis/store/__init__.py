"""Storage: the durable record of subscriptions, groups, accounts and deployments."""
