"""Pre-training of the embedded shapes model (``python -m training.shapes.pretrain``): its data,
language model, VQ decoder and model card."""
