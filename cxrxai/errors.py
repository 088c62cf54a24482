"""Exceptions whose message is the one line a user or a DICOM peer is shown."""


class CXRXAIError(Exception):
    """Base class: the message says what was found and what to do next."""


class UnsupportedInputError(CXRXAIError):
    """The input is not a radiograph we can explain (wrong modality, colour, multi-frame, unreadable...)."""


class BundleError(CXRXAIError):
    """A model bundle is missing, malformed, or does not match the configured content hash."""
