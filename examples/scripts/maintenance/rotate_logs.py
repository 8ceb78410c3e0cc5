"""Pretend to rotate logs; exit code 3 means "nothing to rotate" and is allowed by config."""

import os
import sys

print(f"mode={os.environ['MODE']}: no logs old enough to rotate")
sys.exit(3)
