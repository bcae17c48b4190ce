"""Desired state: what should be served. The routing table (versions.py: each model's default, canary and share,
the versions deployed and their archives) and the one rollout intended at a time (intents.py), both in the
gateway's database, shared by every gateway on it."""
