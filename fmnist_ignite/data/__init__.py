"""Fashion-MNIST: finding and verifying the files, the splits, the loaders."""
