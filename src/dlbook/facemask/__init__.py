"""The face-mask product: data, audit, detection, classification, fit, prediction, runtimes."""
