"""The shipped batteries; importing this package registers them in exam order.

Battery 7 (latent) runs before battery 6 (meta) because battery 6 reads every other battery's
answers, latent's included; the card lists them by number.
"""

from emlab.exam.batteries import ambiguity, correction, identity, latent, leakage, meta, power, reversal  # noqa: F401  (order = exam order)
