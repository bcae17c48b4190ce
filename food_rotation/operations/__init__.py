"""Operations: start, wait for and stop TorchServe and the token gateway (serving, gateway_process, processes), and
the container's entry point (container_init). Used by `make serve` / `make stop`, the container, the tests and the
benches.

Not carried in any .mar (training.archive.staged_library leaves it out): TorchServe never imports it.
"""
