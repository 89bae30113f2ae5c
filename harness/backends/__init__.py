"""Optional engines the harness talks to: vLLM full-attention scoring (`vllm`) and Weights &
Biases logging (`wandb_logger`)."""
