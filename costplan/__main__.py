"""`python -m costplan` runs the command line."""
from costplan.cli import main

main()
