"""The console scripts' entry points: each imports its command's module only once it runs.

Importing a command loads TensorFlow, which takes seconds; a Ctrl-C in that time would end in a
traceback from deep inside TensorFlow's import instead of the commands' one line.
"""

import importlib

from bert.cli import fail


def _entry_point(module):
    def launch():
        try:
            command = importlib.import_module(f"bert.{module}")
        except KeyboardInterrupt:
            fail("interrupted while starting; nothing was written", status=130)
        command.run()

    return launch


vocab = _entry_point("vocab")
prepare_wiki = _entry_point("prepare_wiki")
create_data = _entry_point("create_data")
pretrain = _entry_point("pretrain")
extract_features = _entry_point("extract_features")
classify = _entry_point("classify")
convert = _entry_point("convert")
squad = _entry_point("squad")
loss_curve = _entry_point("loss_curve")
