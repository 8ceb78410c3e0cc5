"""Validate that every record has the required keys."""

records = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
missing = [r for r in records if not {"id", "name"} <= r.keys()]
assert not missing, f"records missing keys: {missing}"
print(f"{len(records)} records valid")
