"""The steps between desired and actual state: rollout.py (deploy, canary, promote, roll back, retire: register,
gate, route, drain, one transition per model at a time), reconciler.py (TorchServe brought back to the routing table
every few seconds) and recovery.py (an intent a crash interrupted, finished or undone)."""
