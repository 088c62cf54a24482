"""Training: data layouts, the joint-loss trainer, and the bundle it writes."""

# The maps that finding masks can supervise (`cxrxai train --finding-mask-map`, `trainer.FindingMapHead`),
# in the words the command line's help and the model card use; here, without torch, so the command line
# can offer them.
FINDING_MAPS = {"head": "a training-only map head", "gradcam": "decoder1's own Grad-CAM map"}
