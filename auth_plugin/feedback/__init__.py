"""The feedback store: corrections callers send (feedback_api) kept upright in named datasets with a fixed
train/held-out split (datasets), which `make retrain` learns from."""
