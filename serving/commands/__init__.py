"""Client subcommands of `dnnzoo` (classify, detect, similar, forecast, generate, predict, health): one module each."""
