from dnnzoo.cli import main

raise SystemExit(main())
