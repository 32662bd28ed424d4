"""Cryptographic capabilities (encrypted federated vector search, MPC KV-cache eviction)."""

__all__: list[str] = []
