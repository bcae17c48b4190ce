"""The version control plane: which archives exist (archive_catalogue), which version serves whom (versions), the
rollout state machine (rollout: deploy -> smoke gate -> canary -> promote with drain, rollback, retire), keeping
TorchServe in step after a restart (reconciler), TorchServe's management API (torchserve_admin), and the admin
routes and CLI over them (admin_api, version_views, models_cli)."""
