"""fairseq_mh: Metropolis-Hastings decoding for conditional masked language models.

``fairseq_mh.core`` is the model-agnostic sampling engine.  Importing this package also
registers the fairseq plug-in (tasks, models, criterion, generator) when fairseq is
installed, which is what ``--user-dir fairseq_mh`` relies on.
"""

__version__ = "0.1.0"
