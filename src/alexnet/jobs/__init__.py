"""Many runs: sweeps that go on past a failed job, SLURM requeueing and run ids, and what each entry point sets up
for its process (runtime.py)."""
