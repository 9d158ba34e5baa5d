"""The embedded synthetic stream: adult -> child -> accent, generated offline in minutes.

Engines from Debian main (espeak-ng, flite, festival) and sox; see docs/data.md.
"""

from benchmarks.synthetic.engines import EngineMissingError, SynthesisError
from benchmarks.synthetic.generator import generate_stream, plan_stream, stream_dir
from benchmarks.synthetic.presets import PRESETS, SyntheticConfig
from benchmarks.synthetic.voices import DOMAINS, list_domains

__all__ = [
    "DOMAINS",
    "EngineMissingError",
    "PRESETS",
    "SynthesisError",
    "SyntheticConfig",
    "generate_stream",
    "list_domains",
    "plan_stream",
    "stream_dir",
]
