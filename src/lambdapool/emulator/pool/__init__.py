"""One endpoint's pool: :class:`PoolCore`'s pure decisions and the runtime shell that carries them out with
pipelines (calls, their exchange with a pipeline, starts, figures)."""
