"""``tunesmith board``: a Gradio web board over the config schema, the CLI verbs and the run
directories (``form`` the schema as a form, ``jobs`` the CLI verbs as a queue, ``runview`` what a
run directory shows, ``state`` the server side, ``app`` the page, ``command`` the verb)."""
