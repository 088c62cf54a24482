"""The CXR-XAI DICOM node: receive chest radiographs, explain them, send results back, lose nothing."""
