"""The models: SAM built from Meta's classes and its checkpoints, the prompt-free segmenter (and
the promptable one, with the prompts sampled from masks), the masked-image-modelling encoder,
activation checkpointing."""
