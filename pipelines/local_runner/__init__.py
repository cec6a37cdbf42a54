"""Run a compiled Argo Workflow on this machine (see `pipelines.run_local` for the CLI).

Modules: `workflow` (load + validate), `refusals` (fields not implemented are refused, walked
along the Argo schema), `preflight` (what a run would reach), `runner` (steps, DAGs, loops, hooks),
`loops`, `nodes`, `task` (one container/script step: inputs, cache, attempts, outputs), `pod`
(file system, working directory, volumes, secrets), `sidecars`, `images` (+ `argosay`, `shims/`),
`exprlang` (`{{=...}}` and expression fields), `expressions` (govaluate `when`), `depends`,
`substitution`, `paths`, `retry`, `cache`, `process` (process groups), `state` (state.json),
`display`, `summary`, `services` (mlflow server), `app` (what the CLI does).
"""
