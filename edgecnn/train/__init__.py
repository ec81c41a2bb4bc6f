"""Training and fine-tuning: `train(TrainConfig, out)`."""
