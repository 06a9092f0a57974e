"""Runnable training examples for Gantry TrainingJobs."""
