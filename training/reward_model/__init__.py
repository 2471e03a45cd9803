"""A preference reward model learned from rankings (issue 22, item 3).

``python -m training.reward_model --study S [--db URL] --out DIR`` (or ``--export DIR``) trains an
open_clip image–text scorer (score = logit scale × cosine, as HPS v2 and PickScore) with a
Plackett–Luce or Bradley–Terry loss over rankings with ties, held out by prompt, and writes DIR
(weights, open_clip config, metrics, model card) for the ``learned`` reward. ``python -m
training.reward_model.pretrain`` pre-trains a small shapes-world model contrastively on rendered
image–caption pairs, to start from (``--init``).

Modules: ``data`` (reading and splitting rankings), ``loss`` (the ranking losses), ``metrics``
(pairwise accuracy, human ceiling, clustered bootstrap), ``model`` (building, initialising and
saving the scorer), ``train`` (config and loop), ``card`` (model card), ``pretrain``, ``cli``.
"""
