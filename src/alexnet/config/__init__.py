"""The config's rules: every key with its type, range and allowed values (schema.py, rules.py), and the checks that
read them (checks.py). Saved configs of older versions are read under today's names by alexnet/legacy.py."""
