import sys

from dicom_node.cli import main

if __name__ == "__main__":  # spawned worker processes import this module again
    sys.exit(main())
