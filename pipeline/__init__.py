"""Luigi tasks of the TAL + BAPG pipeline: `luigi --module pipeline FullRun`.

Importing this package registers every task with luigi, puts the shipped luigi.cfg first in luigi's
configuration path and sends stage messages to stderr: what `luigi --module pipeline` needs. The pure code
(tal_pipeline.stages, .models, .storage, .synthetic) never imports it, so importing a stage does none of this.
"""
import logging as _logging

# luigi finds tasks by importing this package. The task modules follow the data flow, each importing only those
# before it: data_tasks -> bapg_tasks -> detector_tasks -> classification_tasks -> report_tasks (pipeline.base:
# what every task shares).
from pipeline.bapg_tasks import *  # noqa: F403
from pipeline.classification_tasks import *  # noqa: F403
from pipeline.config import use_package_defaults as _use_package_defaults
from pipeline.data_tasks import *  # noqa: F403
from pipeline.detector_tasks import *  # noqa: F403
from pipeline.report_tasks import *  # noqa: F403

_use_package_defaults()  # the shipped luigi.cfg, read first: ./luigi.cfg, $LUIGI_CONFIG_PATH and flags override it

# Stage messages (videos done/to do, failures) go to stderr next to luigi's own lines.
_log = _logging.getLogger("pipeline")
if not _log.handlers:
    _handler = _logging.StreamHandler()
    _handler.setFormatter(_logging.Formatter("%(levelname)s: [pipeline] %(message)s"))
    _log.addHandler(_handler)
    _log.setLevel(_logging.INFO)
    _log.propagate = False
