"""One way to run the per-image stages: images in chunks, each chunk a task on the runner of ``execution``.

:func:`~pipeline.execution.chunks.run_images` splits the images a stage still has to compute into chunks and
runs them in this process, on a local Dask cluster or on a running Dask scheduler; inside a Prefect flow run
each chunk is a Prefect task (with retries) on the flow's task runner. Outputs never depend on the runner.
"""
