"""The models: SAM built from Meta's classes and its checkpoints, the prompt-free segmenter, the
masked-image-modelling encoder, activation checkpointing."""
