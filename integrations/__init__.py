"""Callbacks that record a framework's training as a trainmon run: `lightning.TrainmonCallback` (PyTorch
Lightning, extra `trainmon[lightning]`) and `transformers.TrainmonCallback` (Hugging Face Trainer, extra
`trainmon[transformers]`). Each module imports its framework only when it is imported itself."""
