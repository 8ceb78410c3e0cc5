"""Check data/numbers.csv with a helper from the project's src/ package."""

import csv

from demo_lib import mean

with open("data/numbers.csv", newline="") as handle:  # scripts run from the project root
    values = [float(row["value"]) for row in csv.DictReader(handle)]
assert mean(values) == 4.0, f"mean of {values} is not 4"
print(f"mean of {values} is {mean(values)}")
