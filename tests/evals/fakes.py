"""Fake generators with the real `generate_fn` signature: an oracle, garbage, and a recorder."""

from mixlab.evals.tasks import Task


def oracle(tasks: list[Task], overshoot: bool = True):
    """Answers every task right; overshoots past the stop string as a sloppy generator would."""
    by_prompt = {}
    for t in tasks:
        if t.kind == "exact":
            by_prompt[t.prompt] = f" {t.answer}" + ("\nQuestion: more text" if overshoot else "")
        else:
            by_prompt[t.prompt] = t.solution + ("\ndef unrelated():\n    pass\n" if overshoot else "")

    def generate_fn(prompts, *, max_new_tokens, stop, temperature, num_samples, seed):
        return [[by_prompt[p]] * num_samples for p in prompts]

    return generate_fn


def garbage(prompts, *, max_new_tokens, stop, temperature, num_samples, seed):
    """Plausible-looking but wrong: a number nobody asks for, and a body that returns None."""
    return [[" -123456789 zzz\n    return None"] * num_samples for _ in prompts]


class Recorder:
    """Returns `reply` and remembers every call's keyword arguments."""

    def __init__(self, reply: str = ""):
        self.reply, self.calls = reply, []

    def __call__(self, prompts, **kwargs):
        self.calls.append({"prompts": list(prompts), **kwargs})
        return [[self.reply] * kwargs["num_samples"] for _ in prompts]
