from priming.cli import main

raise SystemExit(main())
