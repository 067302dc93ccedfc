"""Runs inside the trainer's Python: parses a run folder's command as the trainer and accelerate do.

Usage: python sd_scripts_parse.py SD_SCRIPTS_DIR ARGV_JSON
ARGV_JSON is the launch argv. Prints JSON: the trainer's arguments after sdxl_train_network's own
setup_parser() and read_config_from_file(), and accelerate launch's parsed arguments.
"""
import json
import logging
import sys

logging.basicConfig(level=logging.ERROR)
sd_scripts, argv = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, sd_scripts)

import sdxl_train_network  # noqa: E402
from accelerate.commands.launch import launch_command_parser  # noqa: E402
from library import train_util  # noqa: E402

script_at = next(i for i, a in enumerate(argv) if a.endswith("sdxl_train_network.py"))
launch = launch_command_parser().parse_args(argv[3:script_at + 1])
sys.argv = argv[script_at:]  # read_config_from_file parses the command line again
parser = sdxl_train_network.setup_parser()
args = parser.parse_args()
args = train_util.read_config_from_file(args, parser)  # as sdxl_train_network.py's __main__ does
SCALAR = (str, int, float, bool, type(None))
print(json.dumps({"trainer": {k: v for k, v in vars(args).items() if isinstance(v, (*SCALAR, list))},
                  "launch": {k: v for k, v in vars(launch).items() if isinstance(v, SCALAR)}}))
