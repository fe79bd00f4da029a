"""Real data sets and built model assets: loaders (:mod:`.datasets`), asset paths and the builder
(:mod:`.assets`). Everything lives in the git-ignored cache that ``hrc-fl setup-assets`` fills."""
