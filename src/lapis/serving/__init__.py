"""Serving: which engine answers a deployment, and how (backends, pools, balancer, faults)."""
