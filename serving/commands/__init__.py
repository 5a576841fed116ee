"""Client subcommands of `dnnzoo` (classify, detect, similar, forecast, generate, health): one module each."""
