from .cli import api_command

api_command(prog_name="python -m dev_cluster.apiserver")
