"""Operations, the layer on top: what drives the library (food_rotation/) and the gateway (auth_plugin/) as
processes and jobs. Starting, waiting for and stopping TorchServe (torchserve_process) and the gateway
(gateway_process), `make serve` / `make stop` (serving), the container's entry point and health check
(container_init, healthcheck), and `make retrain`, which reads the gateway's datasets and deploys through its
admin API (retrain, retrain_start, retrain_plan, served_weights).

It may import both layers below; neither imports it (tests/unit/test_layers.py). No .mar carries it.
"""
