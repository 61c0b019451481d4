#!/usr/bin/env python3
"""flannelnode's command line. `python build.py --help` lists the steps."""

import sys

from flannelnode.cli import main

if __name__ == "__main__":
    sys.exit(main())
