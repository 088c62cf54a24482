"""Training: data layouts, the joint-loss trainer, and the bundle it writes."""
