"""defectflow tasks: Prefect tasks, one step each, glue between storage and models.

Tasks return small records (ids, paths, scores), never arrays or models.
"""
