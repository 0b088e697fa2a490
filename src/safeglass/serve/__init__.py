"""``safeglass serve``: an OpenAI-compatible endpoint in front of a defended target (docs/serve.md).

``config`` reads the serve config, ``messages`` turns OpenAI requests into conversations within the limits,
``engine`` builds the target and defense as a run does and batches requests into them (logging each reply as a
run stores it), ``app`` is the Starlette app and its uvicorn server."""
