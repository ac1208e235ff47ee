import sys

from recon.book.cli import main

sys.exit(main())
