"""The ground everything stands on: paths, the content-keyed cache, logs, results I/O."""
