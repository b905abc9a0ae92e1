"""``python -m otel_ml.distro.multiprocess --dir D --owner PID``: the deployment's endpoint process."""

import sys

from otel_ml.distro.multiprocess._endpoint import main

sys.exit(main())
