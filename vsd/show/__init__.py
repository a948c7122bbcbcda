"""`vsd show`: a self-contained HTML page of an output's rows, for people to look at a night's work.

``thumbs`` turns a row's source image into a small embedded thumbnail (or says why it cannot),
``page`` renders the page (all text escaped; filters in plain JS), ``commands`` is the CLI.
"""
