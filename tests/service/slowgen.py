"""A generator for the scale-out tests: the engine with the tiny model, slowed to about STEP seconds per
decoding step, so a test can catch (and kill) a worker in the middle of a batch."""

import os
import time


def factory(model):
    from billionsongs.model.generate import Generator

    generator = Generator(model or os.environ["BILLIONSONGS_MODEL"])
    original = generator.generate
    step = float(os.environ.get("SLOWGEN_STEP_SECONDS", "0.02"))

    def generate(ids, batch_size=16, on_token=None):
        rows = max(1, min(batch_size, len(list(ids))))

        def slow(song_id, token):
            time.sleep(step / rows)
            if on_token:
                on_token(song_id, token)
        return original(ids, batch_size=batch_size, on_token=slow)

    generator.generate = generate
    return generator
