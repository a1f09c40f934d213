"""The generator's prompt: versioned words (saved with every generator, so a saved
pipeline keeps the prompt it was trained with) and the chat prompt built from them;
``force_prediction``, the guarantee that a chain names the classifier's label."""

import re
from typing import Optional

from ..chains import HEADER, SECTIONS
from ..labels import POLARITIES

SYSTEM = (
    "You analyse the sentiment of social-media posts toward an aspect, using the text "
    "and the image. Answer with the sections " + ", ".join(SECTIONS) + "."
)
LABEL_WORDS = {"POS": "positive", "NEU": "neutral", "NEG": "negative"}
_POLARITY = re.compile(r"(?i)\b(positive|neutral|negative)\b")


#: The prompt's words, saved with every generator (``settings["prompt"]``), so that a
#: saved pipeline keeps the prompt it was trained with whatever this file says later.
#: Editing the prompt means a new constant (PROMPT_V2) and a new default, not an edit here.
PROMPT_V1 = {
    "system": SYSTEM,
    "user": "Post: {text}\nSentiment toward {target}? Reason step by step.",
    "explain": "\nThe sentiment is {label}: explain why.",
}
#: What new generators are built with.
DEFAULT_PROMPT = PROMPT_V1


def build_prompt(
    tokenizer, text: str, aspect: Optional[str] = None, label: Optional[str] = None, prompt: Optional[dict] = None
) -> str:
    """The chat prompt for one post (and aspect), ending where the chain starts.

    label (POS/NEU/NEG): the decision the chain is to explain (a generator built with
    ``label_in_prompt``); the chain then reasons toward it, as the teacher's second
    stage does with the gold label. ``prompt``: the generator's own words (default:
    :data:`DEFAULT_PROMPT`)."""
    words = prompt or DEFAULT_PROMPT
    target = f'the aspect "{aspect}"' if aspect else "the post as a whole"
    user = words["user"].format(text=text, target=target)
    if label is not None:
        if label not in LABEL_WORDS:
            raise ValueError(f"label must be one of {POLARITIES}, got {label!r}")
        user += words["explain"].format(label=LABEL_WORDS[label])
    messages = [{"role": "system", "content": words["system"]}, {"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def force_prediction(chain: str, label: str) -> str:
    """Make the chain's ``Prediction`` section say ``label`` (POS/NEU/NEG): the
    guarantee that the written chain and the classifier agree.

    The section is found with the chain parser's own header rule (so a word
    "prediction" inside another section is never touched); a chain without one (cut
    by ``max_new_tokens``) gets the section appended."""
    if label not in POLARITIES:
        raise ValueError(f"label must be one of {POLARITIES}, got {label!r}")
    word = LABEL_WORDS[label]
    headers = [m for m in HEADER.finditer(chain) if m.group(1).lower().replace(" ", "_") == "prediction"]
    if headers:
        start = headers[0].end()
        following = [m.start() for m in HEADER.finditer(chain) if m.start() > start]
        end = following[0] if following else len(chain)
        body = chain[start:end]
        replaced, n = _POLARITY.subn(word, body, count=1)
        if n:
            return chain[:start] + replaced + chain[end:]
        return chain[:start] + f' "{word}"' + chain[end:]
    return chain.rstrip() + f'\n\n"Prediction": "{word}"'
