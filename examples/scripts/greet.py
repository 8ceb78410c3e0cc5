"""Greet someone: shows `args` and `env` from config.yaml."""

import argparse
import os

parser = argparse.ArgumentParser()
parser.add_argument("--name", default="world")
print(f"{os.environ['GREETING']}, {parser.parse_args().name}!")
