"""The output as a table: commits, the current rows, earlier nights (`vsd.read`)."""
