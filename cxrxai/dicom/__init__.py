"""DICOM results: the writers and readers of our SR (TID 1500), SEGs (anatomy, heat maps), Secondary Capture
pages and presentation state, their transfer syntaxes and outlines. Needs pydicom and highdicom, never
torch, so 3D Slicer and the results index can use the readers."""
