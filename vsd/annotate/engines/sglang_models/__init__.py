"""Model classes SGLang loads for our exports, registered through ``SGLANG_EXTERNAL_MODEL_PACKAGE``.

Imported by SGLang's model registry inside its own processes (scheduler, tokenizer manager), never
by ``vsd`` itself: a class here with the name of an SGLang architecture is used in its place.
``vsd.annotate.engines.sglang`` sets the variable before the engine starts.
"""
