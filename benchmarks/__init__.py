"""Speed and memory of minires against PyTorch; run each as ``python -m benchmarks.NAME`` from the checkout."""
