"""`python -m exporter`: the same as the `langgraph-stream-exporter` console script."""

import sys

from exporter.cli import main

sys.exit(main())
