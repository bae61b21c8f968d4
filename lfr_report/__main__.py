import sys

from lfr_report.cli import main

sys.exit(main())
