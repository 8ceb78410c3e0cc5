"""Check a small data set with a helper from the project's src/ package."""

from demo_lib import mean

values = [3.0, 4.0, 5.0]
assert mean(values) == 4.0, "mean is wrong"
print(f"mean of {values} is {mean(values)}")
