from pose_pipeline.cli import main

raise SystemExit(main())
