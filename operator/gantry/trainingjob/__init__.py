"""The TrainingJob reconciler: pure builders and state machine, thin kopf handlers."""
