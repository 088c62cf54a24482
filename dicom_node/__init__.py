"""The DICOM service (issue 5): association handling, spool, queue, workers, sending. Not built yet."""
