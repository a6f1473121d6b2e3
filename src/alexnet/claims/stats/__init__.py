"""Statistics in plain numpy and scipy: the exact sign-flip test and the paired bootstrap over test images."""
