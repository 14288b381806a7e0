"""Networking beyond a single listener: private endpoints (lapis.network.private_endpoints),
their store and their ARM shapes. Address rules (networkAcls) live in lapis.dataplane.network."""
