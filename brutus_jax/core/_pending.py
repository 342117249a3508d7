"""Names of brutus's public API whose implementation has not landed yet.

They exist so that every import of the brutus API works with ``brutus`` renamed
to ``brutus_jax``; using them raises ``NotImplementedError`` naming the issue
that delivers them.  Nothing here pretends to compute anything.
"""


def _pending(name, issue, what):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(
            f"brutus_jax.{name} is not implemented yet ({what}; tracked in issue #{issue})."
        )

    return __init__
