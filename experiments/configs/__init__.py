"""Training configs: `get_config(arg)` files for `convfirst train --config experiments/configs/NAME.py[:arg]`."""
