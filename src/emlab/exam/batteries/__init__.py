"""The shipped batteries; importing this package registers them in exam order.

Battery 7 (latent) runs before battery 6 (meta) because battery 6 reads every other battery's
answers, latent's included; the card lists them by number.
"""

# Registration order is the exam order: an import sorter must not reorder these names.
# isort: off
from emlab.exam.batteries import identity, ambiguity, power, reversal, leakage, latent, meta, correction  # noqa: F401
# isort: on
