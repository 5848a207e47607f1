"""What the chapters teach: NumPy networks, optimisers, training, models, backbones, metrics, active learning, conformal prediction, federated learning."""
