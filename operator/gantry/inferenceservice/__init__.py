"""The InferenceService reconciler: model → optimize Job → Triton Deployment + Services.

Pure builders (`optimize`, `triton`, `services`, `status`) and one pure `reconcile`
compute the desired state; `handlers` observes the API and applies it with kopf.
"""
