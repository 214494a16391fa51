"""The control row: an in-process backend with exact timers and no Redis."""
