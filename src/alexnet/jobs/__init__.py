"""Many runs: sweeps that go on past a failed job (sweeps.py), SLURM's job ids and its preemption warning, heard from
a process's first line (slurm.py, the standard library only) and answered at a batch boundary in training
(requeue.py), and what each entry point sets up for its process (runtime.py)."""
