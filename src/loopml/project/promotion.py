"""``registry:`` in the project file: which alias a passing version takes, and when.

```yaml
registry:
  alias: champion        # null: never move an alias
  promote: if_not_worse  # or if_better, or always
  tolerance: 0.0         # how much worse than the champion still counts as not worse
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loopml.errors import ConfigError

PROMOTE_POLICIES = ("if_not_worse", "if_better", "always")


@dataclass(frozen=True)
class PromotionSpec:
    """When a version that passed its gate takes the alias from the current holder.

    ``if_not_worse`` (the default): its main metric on the holdout is at least the
    champion's (re-scored on the same rows) minus ``tolerance``; ``if_better``: it is better
    by more than ``tolerance`` and the paired test's interval lies above zero; ``always``:
    on every pass, as before (the comparison is still recorded).
    """

    promote: str = "if_not_worse"
    tolerance: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "tolerance": self.tolerance}


def parse_promotion(r: Mapping[str, Any], source: str) -> PromotionSpec:
    promote = r.get("promote", "if_not_worse")
    if promote not in PROMOTE_POLICIES:
        raise ConfigError(
            f"registry.promote is {promote!r}",
            where={"file": source, "field": "registry.promote"},
            hint=f"Use one of: {', '.join(PROMOTE_POLICIES)}",
        )
    tolerance = r.get("tolerance", 0.0)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or tolerance < 0:
        raise ConfigError(
            f"registry.tolerance is {tolerance!r}",
            where={"file": source, "field": "registry.tolerance"},
            hint="Give how much worse than the champion still counts as not worse, e.g. 0.005",
        )
    return PromotionSpec(str(promote), float(tolerance))
