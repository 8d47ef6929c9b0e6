"""``[recording]``: the agent's own rolling recording of its pipelines' input, for ``train --last``."""

from __future__ import annotations

from pydantic import Field

from agent.config.base import ByteSize, Duration, Model


class RecordingConfig(Model):
    """``[recording]``: a bounded rolling recording of every pipeline's tags in the state directory.

    The running agent writes what ``edge-agent record`` would (a wide CSV per pipeline, in segments
    under ``<state_dir>/recording/<pipeline>/``), in a thread, so ``edge-agent train --last 6h`` can
    re-baseline from it without a separate recording. The oldest segments are deleted once the
    recording is older than ``max_age`` or larger than ``max_bytes``.
    """

    enabled: bool = Field(
        default=True, description="Record every enabled pipeline's tags; false: no recording."
    )
    max_age: Duration = Field(
        default=7 * 86400.0, gt=0, description="Segments wholly older than this (reading time) are deleted."
    )
    max_bytes: ByteSize = Field(
        default=256 * 10**6,
        ge=10**5,
        description="Total size of the recording (all pipelines); the oldest segments go first.",
    )
    segment: Duration = Field(
        default=3600.0,
        gt=0,
        description="A new segment file at least this often (and before 1/8 of max_bytes), the unit of deletion.",
    )
    queue: int = Field(
        default=1000,
        ge=1,
        description="Batches of readings waiting for the writer thread; when full, newer ones are dropped "
        "(counted and logged), never the pipelines held up.",
    )
