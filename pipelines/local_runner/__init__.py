"""Run a compiled Argo Workflow on this machine (see `pipelines.run_local` for the CLI).

Modules: `workflow` (load + validate), `depends`/`expressions` (DAG conditions), `substitution`,
`paths` (container paths -> run folder), `task` (one task: inputs, cache, attempts, outputs),
`retry`, `cache`, `process` (process groups), `runner` (scheduling), `state` (state.json),
`display`, `summary`, `services` (mlflow server), `app` (what the CLI does).
"""
