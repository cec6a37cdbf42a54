"""The command line: `python -m shared.data_registry build|list ...`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from shared.data_registry.build import DEFAULT_PATH, BuildInput, build, versions
from shared.data_registry.source import resolve_source


def _app():
    import typer

    app = typer.Typer(
        add_completion=False, no_args_is_help=True, help="Build and inspect the DVC data registry."
    )

    @app.callback()
    def _main() -> None:
        """Build and inspect the DVC data registry (one git tag per dataset version)."""

    @app.command("build")
    def build_cmd(
        source: Path | None = typer.Option(
            None,
            help="dataset directory: <split>.parquet files + metadata.json (default: $EMOTION_DATASET_DIR, "
            "else ../shared/data/emotion, else dair-ai/emotion from the Hugging Face Hub)",
        ),
        registry: Path = typer.Option(..., help="the registry git repository (created if missing)"),
        remote: str | None = typer.Option(
            None, help="DVC remote: a directory or s3://bucket/prefix (default: <registry>/../dvc-remote)"
        ),
        remote_endpoint: str | None = typer.Option(
            None, help="S3 endpoint URL (MinIO) (default: $MLFLOW_S3_ENDPOINT_URL or $AWS_ENDPOINT_URL)"
        ),
        version: str | None = typer.Option(
            None, help="the version tag (default: emotion-v<metadata.json version>)"
        ),
        path: str = typer.Option(DEFAULT_PATH, help="where the dataset lives inside the registry"),
        result_file: Path | None = typer.Option(None, help="also write the result JSON here"),
    ) -> None:
        """Publish a dataset directory as a version (git tag) of the registry; idempotent."""
        from shared.cli import run_step

        result = run_step(
            "data-registry",
            lambda: build(
                BuildInput(
                    source=source if source is not None else resolve_source(),
                    registry=registry,
                    remote=remote,
                    remote_endpoint=remote_endpoint,
                    version=version,
                    path=path,
                )
            ),
            None,
        )
        if result_file is not None:
            from shared.results import write_result

            write_result(result, result_file)
        state = "published" if result.created else "already published"
        typer.echo(
            f"{result.version} {state}: commit {result.commit[:12]}, {result.path} {result.dataset_hash}, "
            f"remote {result.remote}; versions: {', '.join(result.tags)}"
        )

    @app.command("source")
    def source_cmd(
        download: bool = typer.Option(True, help="download from the Hub when no folder is found"),
    ) -> None:
        """Print the dataset directory `build` uses without --source (downloading it if needed)."""
        from shared.cli import run_step

        class _Source(BaseModel):
            path: str

        result = run_step("data-registry", lambda: _Source(path=str(resolve_source(download=download))), None)
        typer.echo(result.path)

    @app.command("list")
    def list_cmd(
        registry: Path = typer.Option(..., help="the registry git repository"),
        path: str = typer.Option(DEFAULT_PATH, help="the dataset path inside the registry"),
    ) -> None:
        """List the dataset versions (tags) with their commits and DVC hashes."""
        from shared.cli import run_step

        class _Versions(BaseModel):
            versions: list[dict[str, str]]

        result = run_step("data-registry", lambda: _Versions(versions=versions(registry, path)), None)
        for v in result.versions:
            typer.echo(f"{v['tag']}\t{v['commit'][:12]}\t{v['dataset_hash']}")

    return app


def main() -> None:
    _app()()
