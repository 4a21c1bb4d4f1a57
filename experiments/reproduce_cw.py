"""The paper's Continual World experiments (Table 2): the CW3 triplets and CW10, scored by
success rate, through the same pipeline, flags and report as ``reproduce_brax``.

    python experiments/reproduce_cw.py --scenarios cw/cw3-t1 --methods sac_n ft_1 rewire

(or ``make reproduce-cw SCENARIOS=... METHODS=...``). Needs the ``[cw]`` extra. Each result is
``<out>/cw/<scenario>/<method>.json``; SAC-N runs first and its success curves become the
scenario's reference for forward transfer. Meta-World v3 here, v1 in the paper: success rates
are not comparable with the paper's in absolute terms (docs/continual-world.md).
"""

from __future__ import annotations

import sys

import reproduce_brax

from rewirejax.envs.scenarios import scenario_names

CW_SCENARIOS = tuple(name for name in scenario_names() if name.startswith("cw/"))

if __name__ == "__main__":
  sys.exit(reproduce_brax.main(None, CW_SCENARIOS, __doc__.split("\n\n")[0]))
