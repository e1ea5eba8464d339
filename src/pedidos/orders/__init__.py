"""The order core: the transaction, batches, the processor, solicitacoes, recovery.

Nothing here imports Flask, Werkzeug, pydantic or the web layer."""
