"""An old clean-up job, skipped by config.yaml."""

raise SystemExit("this script is skipped and should never run")
