"""The claims: each claim's runs read from their files (runs.py), judged (judge.py, verdict.py, family.py), and
written as reports and the claim table (report.py, index.py, tables, plots). Imports nothing of model/ or train/, so
src/compare.py never loads torch or Lightning."""
