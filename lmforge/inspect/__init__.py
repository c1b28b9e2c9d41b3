"""Looking inside a model: surprisal, entropy, the logit lens, attention maps and attributions as pure
functions and hook-based views (``views``), and the HTML report built from them (``report``)."""
