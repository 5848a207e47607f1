import sys

from dlbook.core import logs

logs.set_tensorflow_log_level()  # before anything imports TensorFlow

from dlbook.cli import main  # noqa: E402

sys.exit(main())
