"""A generator for the scale-out tests: the engine with the tiny model, slowed to about STEP seconds per
decoding step, so a test can catch (and kill) a worker in the middle of a batch."""

import os
import time


def factory(model):
    from billionsongs.model.generate import Generator

    generator = Generator(model or os.environ["BILLIONSONGS_MODEL"])
    original = generator.gpt.step
    step = float(os.environ.get("SLOWGEN_STEP_SECONDS", "0.02"))

    def slow_step(*args, **kwargs):
        time.sleep(step)
        return original(*args, **kwargs)

    generator.gpt.step = slow_step
    return generator
