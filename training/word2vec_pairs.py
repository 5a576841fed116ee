"""The related word pairs that judge a word2vec run on the embedded pydoc text.

Fixed before any model was trained (chosen for meaning, each word occurring at least five times in
`pydoc_data.topics` under the family's tokenisation), and shared by the quality test and the gensim
benchmark so both score the same list. Do not tune this list to a model's results: it is the yardstick.
"""

PAIRS: tuple[tuple[str, str], ...] = (
    ("true", "false"),
    ("class", "instance"),
    ("keys", "values"),
    ("key", "value"),
    ("read", "write"),
    ("get", "set"),
    ("start", "stop"),
    ("integer", "float"),
    ("list", "tuple"),
    ("upper", "lower"),
    ("left", "right"),
    ("first", "last"),
    ("positional", "keyword"),
    ("try", "except"),
    ("if", "else"),
    ("break", "continue"),
    ("str", "bytes"),
    ("local", "global"),
    ("positive", "negative"),
    ("start", "end"),
    ("before", "after"),
    ("argument", "parameter"),
    ("function", "method"),
    ("enter", "exit"),
    ("yield", "generator"),
    ("async", "await"),
    ("__getattr__", "__setattr__"),
    ("__enter__", "__exit__"),
    ("multiplication", "division"),
    ("x", "y"),
    ("arguments", "parameters"),
    ("dictionary", "list"),
    ("strings", "bytes"),
    ("less", "greater"),
    ("unary", "binary"),
    ("lowercase", "uppercase"),
    ("iterator", "iterable"),
    ("sequence", "mapping"),
    ("mutable", "immutable"),
    ("leading", "trailing"),
)
