"""Actual state: what TorchServe really has registered and how many workers are live (torchserve_admin.py), and on
a shared database what every pod reports of its own TorchServe (pods.py)."""
