"""Training: data layouts, the joint-loss trainer, and the bundle it writes."""

# The maps that finding masks can supervise (`cxrxai train --finding-mask-map`, `trainer.FindingMapHead`);
# here, without torch, so the command line can offer them.
FINDING_MAPS = ("head", "gradcam")
