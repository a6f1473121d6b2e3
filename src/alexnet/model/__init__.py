"""The network of §3 (net.py), its LRN layer (lrn.py, with the fast kernels in lrn_kernels.py) and the two-device
towers (towers.py). A leaf: it knows nothing of training or claims."""
