"""One module per explanation method; each registers itself (`cxrxai.explain.registry`). Module level
stays free of torch, so listing the methods (3D Slicer, the command line's help) loads no model stack."""
