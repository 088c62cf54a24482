"""DICOM results: Structured Report (TID 1500) writer and reader. Needs pydicom and highdicom only, never
torch, so 3D Slicer and the results index can use it."""
