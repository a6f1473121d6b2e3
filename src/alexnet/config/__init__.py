"""The config's rules: every key with its type, range and allowed values (schema.py, rules.py), the checks that
read them (checks.py), and saved configs of older versions read under today's names (legacy.py)."""
