"""Datasets for EM model organisms: generators (harmful research sets + matched controls) and loaders.

`emlab.data.generate` builds the sets from the banks in `emlab/data/banks/`; `emlab.data.check`
validates and loads any OpenAI-messages JSONL. Generated harmful files are research material:
each carries CANARY and must never be used to train deployed models. See docs/datasets.md.
"""

from emlab.data.banks import CANARY

__all__ = ["CANARY"]
