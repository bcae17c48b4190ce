"""A Java-free token proxy in front of TorchServe's inference API (see auth_plugin/app.py)."""
