"""`python -m mnp` runs the same CLI as the `mnp` console script."""

from mnp.cli import main

raise SystemExit(main())
