"""The dataflow runtime behind :class:`~asyncwait.StreamEnvironment` (private).

plan.py            the plan of a job being built: pipelines, step specs, step names
stream.py          DataStream, the builder that appends to the plan
channel.py         bounded channels between stages, and checkpoint barriers
steps.py           chained stateless steps (map, filter, flat_map)
watermark_step.py  the chained step of a WatermarkStrategy
stages.py          the stage protocol, source and sink stages
operator_stage.py  the stage of an async operator
errorlog.py        the errors file
results.py         JobProgress, JobResult, OperatorSummary
job.py             one run: stages as tasks, checkpoints, failure, shutdown
"""
