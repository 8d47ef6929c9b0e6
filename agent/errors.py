"""One error hierarchy for the whole agent.

    EdgeAgentError
    ├── ConfigError          bad configuration; the CLI prints it and exits 2
    ├── ModelError           an ONNX model that does not load or does not fit its pipeline
    └── PluginError          raised by sources and sinks at their boundary
        ├── TransientError   worth retrying soon (connection refused, timeout, broker gone)
        └── FatalError       retrying soon will not help (bad credentials, untrusted certificate);
                             the supervisor still retries, but at its slowest pace, and says why
            └── InputUnavailable  a finite input (a replay with at_end = "stop") cannot be read: not
                             retried; the component ends failed and ``edge-agent run`` exits 1

Plugins translate library exceptions at their boundary with ``raise TransientError(...) from exc``;
the runner and the supervisor decide what to do. Nothing returns ``None`` for an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class EdgeAgentError(Exception):
    """Base of every error the agent raises on purpose."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file: where it is and what to do about it."""

    path: str  # key path such as "sources[1].tags[3].address"; "" for the whole file
    message: str
    origin: str = ""  # where the bad value came from when not the file: "EDGE_AGENT__... (environment)"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(EdgeAgentError):
    """The configuration is invalid. ``issues`` lists every problem found, each with its key path."""

    def __init__(self, file: str, issues: Sequence[ConfigIssue]) -> None:
        self.file = file
        self.issues = list(issues)
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.file}: {len(self.issues)} problem{'s' if len(self.issues) != 1 else ''} in the config"
        return "\n".join([head, *(f"  {issue.origin or self.file}: {issue}" for issue in self.issues)])


class ModelError(EdgeAgentError):
    """An ONNX model could not be loaded or does not match its pipeline's feature vector."""


class PluginError(EdgeAgentError):
    """An error raised by a source or sink, already classified."""


class TransientError(PluginError):
    """A failure that may go away by itself: retry with the normal backoff."""


class FatalError(PluginError):
    """A failure that needs a person (credentials, certificates, a wrong address).

    The supervisor keeps retrying at its slowest pace so a fix on the other side is picked up
    without restarting the agent, and logs the error with its hint once per episode.
    """


class InputUnavailable(FatalError):
    """A finite input that cannot be read at all (a replay file with ``at_end = "stop"``).

    Retrying would only repeat the error every 30 s forever; the supervisor ends the component instead,
    leaving its status DOWN with this error, and ``edge-agent run`` exits 1 once the agent has stopped.
    """
