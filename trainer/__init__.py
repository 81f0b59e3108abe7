"""The Ray-free pruning trainer: models, data, masks, the training loop and the methods."""
