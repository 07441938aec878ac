"""The deployment guide's four health endpoints."""
