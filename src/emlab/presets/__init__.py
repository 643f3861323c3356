"""Named training presets: one YAML file per preset, each a complete `emlab.train.TrainConfig`.

Read them with `emlab.train.load_preset(name)` / `list_presets()` or `emlab train presets`.
"""
